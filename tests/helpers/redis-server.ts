import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort } from '../../bench/lib/redis.js';

function cli(port: number, ...args: string[]): string {
  const result = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return (result.stdout ?? '') + (result.stderr ?? '');
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface RedisServer {
  port: number;
  url: string;
  stop(): Promise<void>;
  /** Starts again on the same port, empty (no persistence). */
  start(): Promise<void>;
  cli(...args: string[]): string;
}

/** A real redis-server on a free loopback port, without persistence. */
export async function startRedisServer(extraArgs: string[] = [], port?: number): Promise<RedisServer> {
  const chosen = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'gpp-redis-'));
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    mkdirSync(dir, { recursive: true }); // stop() removes it; a restart makes it again
    child = spawn(
      'redis-server',
      ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs],
      {
        stdio: 'ignore',
      },
    );
    // A server started with --requirepass answers NOAUTH: it is up all the same.
    await waitFor(() => /PONG|NOAUTH/.test(cli(chosen, 'PING')), `redis-server on port ${chosen}`);
  };
  const stop = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    start,
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    cli: (...args) => cli(chosen, ...args),
  };
}

export interface RedisCluster {
  nodes: string[];
  stop(): Promise<void>;
}

/** A real Redis Cluster of `masters` masters and no replicas, on free loopback ports. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gpp-cluster-'));
  const servers: RedisServer[] = [];
  for (let i = 0; i < masters; i++) {
    servers.push(
      await startRedisServer([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${i}.conf`),
        '--cluster-node-timeout',
        '2000',
      ]),
    );
  }
  const nodes = servers.map((s) => `127.0.0.1:${s.port}`);
  const created = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
  await waitFor(
    () => servers.every((s) => s.cli('CLUSTER', 'INFO').includes('cluster_state:ok')),
    'cluster_state:ok',
    20_000,
  );
  return {
    nodes,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
