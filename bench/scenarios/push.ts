import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { backendStats, startMock, startProxy, type Running } from '../lib/processes.js';
import { startRedis } from '../lib/redis.js';
import type { Row } from '../lib/report.js';

export interface PushOptions {
  /** Subscribers on one instance. */
  subscribers: number;
  /** Groups the spread case follows (subscribers round-robin over them). */
  groups: number;
  /** Instances of the fleet case. */
  instances: number;
  /** Clients of the polling-against-push comparison. */
  clients: number;
  /** Seconds of that comparison, per side. */
  seconds: number;
  /** Changes during it. */
  changes: number;
  /** The pollers' interval, ms. */
  pollMs: number;
  /** Load generator processes the subscribers are split over. */
  generators: number;
}

export const PUSH_DEFAULTS: PushOptions = {
  subscribers: 10_000,
  groups: 1000,
  instances: 4,
  clients: 1000,
  seconds: 60,
  changes: 6,
  pollMs: 5000,
  generators: 1,
};

const CLIENTS = fileURLToPath(new URL('../lib/sse-clients.ts', import.meta.url));
const TOKEN = 'bench-admin-token-0123456789';
// Batching on: a change of 1,000 groups is 1,000 loads, which one batch call per 100 ids serves.
const PROXY_ENV = {
  ADMIN_TOKEN: TOKEN,
  PUSH_MAX_SUBSCRIBERS: '30000',
  MAX_CONNECTIONS: '40000',
  PUSH_HEARTBEAT_MS: '600000',
  UPSTREAM_BATCH: 'on',
};

/** The proxy's own fan-out time for the changes so far (mean of gpp_push_fanout_seconds, ms), and how many. */
async function fanout(proxyUrl: string): Promise<string> {
  const text = await (await fetch(`${proxyUrl}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const sum = value('gpp_push_fanout_seconds_sum');
  const count = value('gpp_push_fanout_seconds_count');
  return `${((1000 * sum) / count).toFixed(0)} ms`;
}

interface Generator {
  child: ChildProcess;
  kill(): void;
  next(prefix: string, timeoutMs?: number): Promise<string>;
  send(line: string): void;
}

/** `count` subscribers split over `processes` generators (client i of all follows group base + i % groups); one Generator to drive them. */
function generators(
  processes: number,
  env: { URLS: string; COUNT: number; GROUPS: number; BASE_ID: number },
): Generator {
  const parts = Array.from({ length: processes }, (_, p) => {
    const count = Math.floor(env.COUNT / processes) + (p < env.COUNT % processes ? 1 : 0);
    // Keep the whole run's groups: part p starts at group offset p (its clients take every group in turn).
    return generator({
      URLS: env.URLS,
      COUNT: String(count),
      GROUPS: String(env.GROUPS),
      BASE_ID: String(env.BASE_ID),
    });
  });
  return {
    child: parts[0]!.child,
    kill: () => {
      for (const part of parts) part.kill();
    },
    send: (line) => {
      for (const part of parts) part.send(line);
    },
    async next(prefix, timeoutMs) {
      const answers = await Promise.all(parts.map((part) => part.next(prefix, timeoutMs)));
      if (prefix.startsWith('arrived'))
        return JSON.stringify(answers.flatMap((answer) => JSON.parse(answer) as number[]));
      return answers.join(' ');
    },
  };
}

/** The load generator in a process of its own (bench/lib/sse-clients.ts). */
function generator(env: Record<string, string>): Generator {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENTS], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const waiter of waiters.splice(0)) waiter();
  });
  return {
    child,
    kill: () => void child.kill(),
    send: (line) => child.stdin!.write(`${line}\n`),
    async next(prefix, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = lines.findIndex((line) => line.startsWith(prefix));
        if (index !== -1) return lines.splice(index, 1)[0]!.slice(prefix.length).trim();
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`load generator: no '${prefix}' line`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
  };
}

function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

async function change(mockUrl: string, proxyUrl: string, ids: number[]): Promise<number> {
  for (const id of ids) await fetch(`${mockUrl}/__touch/${id}`, { method: 'POST' });
  const at = performance.timeOrigin + performance.now();
  const response = await fetch(`${proxyUrl}/admin/invalidate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ids }),
  });
  if (response.status !== 200) throw new Error(`invalidate answered ${response.status}`);
  return at;
}

function quantiles(values: number[]): string {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const q = (p: number): string =>
    (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN).toFixed(1);
  return `p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms (${sorted.length} of ${values.length})`;
}

/**
 * Push: subscribers held by a load generator in its own process, against
 * proxy processes on loopback. (1) one change reaching 10,000 subscribers of
 * one group, and of 1,000 groups; (2) resident memory per idle subscriber;
 * (3) a 4-instance fleet sharing Redis: origin calls for one change;
 * (4) polling against push for 1,000 clients.
 */
export async function push(options: Partial<PushOptions> = {}): Promise<Row[]> {
  const o = { ...PUSH_DEFAULTS, ...options };
  const lines = ['| measurement | result | target |', '| --- | --- | --- |'];
  const mock = await startMock({ MOCK_LATENCY_MS: '20' });
  const running: Running[] = [];
  const launched: Generator[] = [];
  try {
    // 1 and 2: one instance.
    const proxy = await startProxy({ UPSTREAM_URL: mock.url, ...PROXY_ENV });
    running.push(proxy);
    await fetch(`${proxy.url}/groups/42`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const before = rssOf(proxy.child.pid!);
    const one = generators(o.generators, { URLS: proxy.url, COUNT: o.subscribers, GROUPS: 1, BASE_ID: 42 });
    launched.push(one);
    await one.next('ready');
    await new Promise((resolve) => setTimeout(resolve, 2000)); // settle, so the RSS is of idle streams
    const after = rssOf(proxy.child.pid!);
    lines.push(
      `| resident memory per idle subscriber (${o.subscribers} streams) | ${((after - before) / o.subscribers / 1024).toFixed(1)} KB (RSS ${(before / 2 ** 20).toFixed(0)} → ${(after / 2 ** 20).toFixed(0)} MB) | ≤ 10 KB |`,
    );
    one.send('mark');
    const atOne = await change(mock.url, proxy.url, [42]);
    const arrivedOne = JSON.parse(await one.next('arrived ')) as number[];
    lines.push(
      `| one change → ${o.subscribers} subscribers of one group, on one instance: at the clients | ${quantiles(arrivedOne.map((t) => t - atOne))} | p99 ≤ 200 ms |`,
    );
    lines.push(
      `| the same, the proxy's own fan-out (change applied → last subscriber written, the load included) | ${await fanout(proxy.url)} | |`,
    );
    one.send('quit');

    const spread = generators(o.generators, {
      URLS: proxy.url,
      COUNT: o.subscribers,
      GROUPS: o.groups,
      BASE_ID: 100_000,
    });
    launched.push(spread);
    await spread.next('ready');
    spread.send('mark');
    const ids = Array.from({ length: o.groups }, (_, i) => 100_000 + i);
    const atSpread = await change(mock.url, proxy.url, ids);
    const arrivedSpread = JSON.parse(await spread.next('arrived ')) as number[];
    lines.push(
      `| one change of ${o.groups} groups → ${o.subscribers} subscribers spread over them: at the clients | ${quantiles(arrivedSpread.map((t) => t - atSpread))} | p99 ≤ 200 ms |`,
    );
    spread.send('quit');
    await proxy.stop();
    running.splice(0);

    // 3: a fleet sharing Redis.
    const redis = await startRedis();
    try {
      const fleet: Running[] = [];
      for (let i = 0; i < o.instances; i++)
        fleet.push(
          await startProxy({ UPSTREAM_URL: mock.url, REDIS_URL: redis.url, REDIS_PREFIX: 'bench-push:', ...PROXY_ENV }),
        );
      running.push(...fleet);
      const many = generators(o.generators, {
        URLS: fleet.map((p) => p.url).join(','),
        COUNT: o.subscribers,
        GROUPS: 1,
        BASE_ID: 77,
      });
      launched.push(many);
      await many.next('ready');
      const callsBefore = (await backendStats(mock.url)).calls;
      many.send('mark');
      const atFleet = await change(mock.url, fleet[0]!.url, [77]);
      const arrivedFleet = JSON.parse(await many.next('arrived ')) as number[];
      const calls = (await backendStats(mock.url)).calls - callsBefore;
      lines.push(
        `| one change → ${o.subscribers} subscribers over ${o.instances} instances sharing Redis | **${calls} origin call(s)**; ${quantiles(arrivedFleet.map((t) => t - atFleet))} | 1 origin call |`,
      );
      many.send('quit');
      for (const p of fleet) await p.stop();
      running.splice(0);
    } finally {
      redis.stop();
    }

    // 4: polling against push.
    for (const mode of ['poll', 'stream'] as const) {
      const proxy2 = await startProxy({ UPSTREAM_URL: mock.url, ...PROXY_ENV });
      running.push(proxy2);
      const callsBefore = (await backendStats(mock.url)).calls;
      const clients = generator({
        URLS: proxy2.url,
        COUNT: String(o.clients),
        GROUPS: '1',
        BASE_ID: '55',
        MODE: mode,
        POLL_MS: String(o.pollMs),
        TRACK_REVISIONS: 'on',
      });
      launched.push(clients);
      await clients.next('ready');
      const started = Date.now();
      for (let i = 0; i < o.changes; i++) {
        await new Promise((resolve) => setTimeout(resolve, (o.seconds * 1000) / (o.changes + 1)));
        // Group 55's revisions: 1-6 during the polling run, 7-12 during the push run (one mock backend).
        const revision = i + 1 + (mode === 'stream' ? o.changes : 0);
        clients.send(`change ${revision} ${await change(mock.url, proxy2.url, [55])}`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, o.seconds * 1000 - (Date.now() - started))));
      clients.send('report');
      const report = JSON.parse(await clients.next('report ')) as {
        requests: number;
        delays: number[];
        missed: number;
      };
      const calls = (await backendStats(mock.url)).calls - callsBefore;
      lines.push(
        `| ${mode === 'poll' ? `polling every ${o.pollMs / 1000} s` : 'one stream each'}: ${o.clients} clients, ${o.seconds} s, ${o.changes} changes | ${report.requests} requests to the proxy, ${calls} backend calls; change → client ${quantiles(report.delays)}${report.missed > 0 ? `, ${report.missed} not seen` : ''} | |`,
      );
      clients.send('quit');
      await proxy2.stop();
      running.splice(0);
    }
  } finally {
    for (const g of launched) g.kill();
    for (const p of running) await p.stop();
    await mock.stop();
  }
  console.log(`\n### push\n\n${lines.join('\n')}\n`);
  return [];
}
