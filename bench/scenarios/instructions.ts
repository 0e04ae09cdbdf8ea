import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';
import { ROOT, startMock } from '../lib/processes.js';
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

// valgrind names its control pipes after $HOST and $USER; the controller must see the same values.
const CONTROL_ENV = { HOST: '127.0.0.1', USER: 'bench' };

/** Starts `script` under callgrind with collection on and resolves with its URL once it prints `ready`. */
async function underCallgrind(outDir: string, script: string[], env: Record<string, string>, ready: RegExp): Promise<{ child: ChildProcess; url: string }> {
  const args = ['--tool=callgrind', '--separate-threads=yes', '--dump-instr=no', `--callgrind-out-file=${join(outDir, 'cg.out')}`, process.execPath, ...SIDECAR_NODE_FLAGS, ...script];
  const child = spawn('valgrind', args, { cwd: ROOT, env: { ...process.env, ...env, ...CONTROL_ENV }, stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script[0]} did not start under valgrind within 120 s`)), 120_000);
    child.once('error', (error) => reject(new Error(`valgrind failed (install it with 'apt-get install valgrind'): ${error.message}`)));
    child.once('exit', (code) => reject(new Error(`${script[0]} exited with ${code} under valgrind before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!ready.test(line)) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
  });
  return { child, url };
}

function callgrindControl(pid: number, command: '-z' | '-d'): void {
  execFileSync('callgrind_control', [command, String(pid)], { env: { ...process.env, ...CONTROL_ENV }, stdio: 'ignore' });
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
async function count(server: { child: ChildProcess; url: string }, outDir: string, o: InstructionsOptions): Promise<Counted> {
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
  const total = (name: string): number => Number(/^summary: (\d+)$/m.exec(readFileSync(join(outDir, name), 'utf8'))?.[1] ?? 0);
  const main = files.find((name) => name.endsWith('-01'));
  if (main === undefined) throw new Error(`no callgrind dump in ${outDir}`);
  return { mainThread: total(main) / o.requests, allThreads: files.reduce((sum, name) => sum + total(name), 0) / o.requests };
}

/**
 * L1-hit cost in instructions per request, proxy next to the bare node:http
 * server, each under valgrind's callgrind. Instruction counts do not depend
 * on what else the (virtual) machine is doing, so this ratio repeats within
 * ~2% where req/s on this VM moves by 30%. It counts user space only (the
 * kernel's share per request, the same for both, is left out), and under
 * valgrind requests arrive ~50× slower, so work done per millisecond (the
 * answer memo, timers) weighs more per request than at full speed: both
 * make the proxy look costlier than it is.
 */
export async function instructions(options: Partial<InstructionsOptions> = {}): Promise<Row[]> {
  const o = { ...INSTRUCTIONS_DEFAULTS, ...options };
  const mock = await startMock({ MOCK_LATENCY_MS: '0' });
  const dirs = [mkdtempSync(join(tmpdir(), 'cg-proxy-')), mkdtempSync(join(tmpdir(), 'cg-bare-'))] as const;
  const children: ChildProcess[] = [];
  try {
    const proxy = await underCallgrind(dirs[0], ['dist/cli.js'], { UPSTREAM_URL: mock.url, TTL_MS: '3600000', PORT: '0', LOG_LEVEL: 'info' }, /listening/);
    children.push(proxy.child);
    const first = await fetch(`${proxy.url}/groups/42`);
    const body = Buffer.from(await first.arrayBuffer());
    const hit = await fetch(`${proxy.url}/groups/42`);
    await hit.arrayBuffer();
    const headers: Record<string, string> = {};
    for (const name of ['content-type', 'cache-control', 'age', 'cache-status', 'etag', 'content-length']) headers[name] = hit.headers.get(name)!;
    const bare = await underCallgrind(dirs[1], ['bench/bare-server.mjs', JSON.stringify({ headers, body: body.toString('base64') })], {}, /bare server listening/);
    children.push(bare.child);
    // valgrind runs each process on one core at a time; the two run side by side to halve the wait.
    const [proxyCount, bareCount] = await Promise.all([count(proxy, dirs[0], o), count(bare, dirs[1], o)]);
    console.log(`\nboth under valgrind --tool=callgrind, node ${SIDECAR_NODE_FLAGS.join(' ')}; ${o.warmup} warm-up requests, then ${o.requests} counted, ${o.connections} connections`);
    console.log(`\n| server | instructions per request, main thread | all threads |`);
    console.log(`| --- | ---: | ---: |`);
    console.log(`| bare node:http, same bytes and headers | ${Math.round(bareCount.mainThread)} | ${Math.round(bareCount.allThreads)} |`);
    console.log(`| proxy, L1 hit | ${Math.round(proxyCount.mainThread)} | ${Math.round(proxyCount.allThreads)} |`);
    console.log(`| bare ÷ proxy (throughput per core, if instructions were time) | ${(bareCount.mainThread / proxyCount.mainThread).toFixed(3)} | ${(bareCount.allThreads / proxyCount.allThreads).toFixed(3)} |`);
    const results = new URL('../results/', import.meta.url);
    mkdirSync(results, { recursive: true });
    const record = { scenario: 'instructions', node: process.version, flags: SIDECAR_NODE_FLAGS, ...o, bare: bareCount, proxy: proxyCount };
    writeFileSync(new URL('instructions.json', results), JSON.stringify(record, null, 2) + '\n');
    return [];
  } finally {
    for (const child of children) child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    await mock.stop();
  }
}
