import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';
import { startBareServer, startMock, startProxy, type NodeProcessOptions, type Running } from '../lib/processes.js';
import type { Row } from '../lib/report.js';

export interface InstructionsOptions {
  /** Requests counted, after the warm-up. */
  requests: number;
  /** Requests sent before counting starts, so both JITs have settled. */
  warmup: number;
  connections: number;
}

export const INSTRUCTIONS_DEFAULTS: InstructionsOptions = { requests: 10_000, warmup: 20_000, connections: 64 };

interface Counted {
  /** User-space instructions per request on the main (JavaScript) thread. */
  mainThread: number;
  /** The same over every thread: GC helpers, JIT compiler, libuv pool. */
  allThreads: number;
}

// valgrind names its control pipes after $HOST and $USER; the controller must see the same values
// (HOST is also the proxy's listen address, so it stays loopback).
const CONTROL_ENV = { HOST: '127.0.0.1', USER: 'bench' };

/** Node under callgrind, counting from the start, one output file per thread in `outDir`. */
function callgrind(outDir: string): NodeProcessOptions {
  return {
    wrapper: [
      'valgrind',
      '--quiet',
      '--tool=callgrind',
      '--separate-threads=yes',
      '--dump-instr=no',
      `--callgrind-out-file=${join(outDir, 'cg.out')}`,
    ],
    nodeArgs: [...SIDECAR_NODE_FLAGS],
    startTimeoutMs: 120_000,
  };
}

function valgrindHint(error: Error): never {
  throw new Error(`${error.message} (valgrind and callgrind_control come with 'apt-get install valgrind')`);
}

function callgrindControl(pid: number, command: '-z' | '-d'): void {
  execFileSync('callgrind_control', [command, String(pid)], {
    env: { ...process.env, ...CONTROL_ENV },
    stdio: 'ignore',
  });
}

/** Sends `count` GETs over `connections` keep-alive connections, one in flight per connection. */
async function fire(pool: Pool, path: string, count: number, connections: number): Promise<void> {
  let left = count;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (left-- > 0) {
        const response = await pool.request({ path, method: 'GET' });
        await response.body.arrayBuffer();
        if (response.statusCode !== 200) throw new Error(`${path} answered ${response.statusCode}`);
      }
    }),
  );
}

/** Zeroes the counters, sends `requests`, dumps, and reads the per-thread totals of that dump. */
async function count(server: Running, outDir: string, o: InstructionsOptions): Promise<Counted> {
  const pool = new Pool(server.url, { connections: o.connections });
  try {
    await fire(pool, '/groups/42', o.warmup, o.connections);
    callgrindControl(server.child.pid!, '-z');
    await fire(pool, '/groups/42', o.requests, o.connections);
    callgrindControl(server.child.pid!, '-d');
  } finally {
    await pool.close();
  }
  // The dump after zeroing is part 1: one file per thread, cg.out.1-01 being the main thread.
  const files = readdirSync(outDir).filter((name) => name.startsWith('cg.out.1-'));
  const total = (name: string): number =>
    Number(/^summary: (\d+)$/m.exec(readFileSync(join(outDir, name), 'utf8'))?.[1] ?? 0);
  const main = files.find((name) => name.endsWith('-01'));
  if (main === undefined) throw new Error(`no callgrind dump in ${outDir}`);
  return {
    mainThread: total(main) / o.requests,
    allThreads: files.reduce((sum, name) => sum + total(name), 0) / o.requests,
  };
}

/**
 * L1-hit cost in instructions per request, proxy next to the bare node:http
 * server, each under valgrind's callgrind. Instruction counts do not depend
 * on what else the (virtual) machine is doing, so this ratio repeats within
 * a few percent (the spread is whether V8's collector runs inside the counted
 * window) where req/s on this VM moves by 30%. It counts user space only (the
 * kernel's share per request, the same for both, is left out), and under
 * valgrind requests arrive ~50× slower, so work done per millisecond (the
 * answer memo, timers) weighs more per request than at full speed: both
 * make the proxy look costlier than it is.
 */
export async function instructions(options: Partial<InstructionsOptions> = {}): Promise<Row[]> {
  const o = { ...INSTRUCTIONS_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: '0' });
  const dirs = [mkdtempSync(join(tmpdir(), 'cg-proxy-')), mkdtempSync(join(tmpdir(), 'cg-bare-'))] as const;
  const servers: Running[] = [];
  try {
    const proxy = await startProxy(
      { UPSTREAM_URL: mock.url, TTL_MS: '3600000', ...CONTROL_ENV },
      callgrind(dirs[0]),
    ).catch(valgrindHint);
    servers.push(proxy);
    const bare = await startBareServer(proxy.url, CONTROL_ENV, callgrind(dirs[1])).catch(valgrindHint);
    servers.push(bare);
    // valgrind runs each process on one core at a time; the two run side by side to halve the wait.
    const [proxyCount, bareCount] = await Promise.all([count(proxy, dirs[0], o), count(bare, dirs[1], o)]);
    console.log(
      `\nboth under valgrind --tool=callgrind, node ${SIDECAR_NODE_FLAGS.join(' ')}; ${o.warmup} warm-up requests, then ${o.requests} counted, ${o.connections} connections`,
    );
    console.log(`\n| server | instructions per request, main thread | all threads |`);
    console.log(`| --- | ---: | ---: |`);
    console.log(
      `| bare node:http, same bytes and headers | ${Math.round(bareCount.mainThread)} | ${Math.round(bareCount.allThreads)} |`,
    );
    console.log(`| proxy, L1 hit | ${Math.round(proxyCount.mainThread)} | ${Math.round(proxyCount.allThreads)} |`);
    console.log(
      `| bare ÷ proxy (throughput per core, if instructions were time) | ${(bareCount.mainThread / proxyCount.mainThread).toFixed(3)} | ${(bareCount.allThreads / proxyCount.allThreads).toFixed(3)} |`,
    );
    const results = new URL('../results/', import.meta.url);
    mkdirSync(results, { recursive: true });
    const record = {
      scenario: 'instructions',
      node: process.version,
      flags: SIDECAR_NODE_FLAGS,
      ...o,
      bare: bareCount,
      proxy: proxyCount,
    };
    writeFileSync(new URL('instructions.json', results), `${JSON.stringify(record, null, 2)}\n`);
    return [];
  } finally {
    for (const server of servers) server.child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    await mock.stop();
  }
}
