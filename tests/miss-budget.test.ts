import { afterEach, describe, expect, inject, it } from 'vitest';
import { RedisTier } from '../src/shared-tier/redis/redis-tier.js';
import { CoalescingCache, ProxyError, type Loader } from '../src/index.js';
import { MissBudget } from '../src/penetration/miss-budget.js';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { startSidecar, type RunningSidecar } from '../src/server/sidecar.js';
import type { SidecarConfig } from '../src/server/config.js';
import { ManualClock } from '../src/util/clock.js';
import { deferred } from './helpers/deferred.js';
import { uniquePrefix } from './helpers/fleet.js';
import { until } from './helpers/until.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';

type Profile = { id: string };

const engines: CoalescingCache<Profile>[] = [];
let backend: RunningMockBackend | undefined;
const sidecars: RunningSidecar[] = [];
const servers: RedisServer[] = [];
afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.close();
  for (const sidecar of sidecars.splice(0)) await sidecar.close();
  for (const server of servers.splice(0)) await server.stop();
  await backend?.close();
  backend = undefined;
});

function budgeted(
  options: { burst?: number; perSecond?: number; load?: Loader<Profile>; staleTtlMs?: number; ttlMs?: number } = {},
) {
  const clock = new ManualClock();
  const calls: string[] = [];
  const budget = new MissBudget({ burst: options.burst ?? 3, perSecond: options.perSecond ?? 1, clock });
  const load: Loader<Profile> =
    options.load ??
    (async (key) => {
      calls.push(key);
      return { id: key };
    });
  const engine = new CoalescingCache<Profile>({
    load,
    clock,
    ttlJitter: 0,
    originBudget: budget,
    staleTtlMs: options.staleTtlMs,
    ttlMs: options.ttlMs,
  });
  engines.push(engine);
  return { engine, clock, calls, budget };
}

describe('the miss budget in the engine', () => {
  it('refuses a client its misses past the burst with 429, while another client and the scanner’s own hits are unaffected', async () => {
    const { engine, calls, budget, clock } = budgeted({ burst: 3 });
    for (const id of ['1', '2', '3']) expect((await engine.get(id, { client: 'scanner' })).outcome).toBe('miss');
    const refused = await engine.get('4', { client: 'scanner' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ProxyError);
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', status: 429, retryAfterSeconds: 1 });
    expect((refused as ProxyError).headers).toEqual({
      'ratelimit-policy': '"misses";q=3;w=3',
      ratelimit: '"misses";r=0;t=1',
    });
    expect(calls).toEqual(['1', '2', '3']);
    // Hits are free, over budget or not; another client has its own budget.
    expect((await engine.get('1', { client: 'scanner' })).outcome).toBe('hit');
    expect((await engine.get('4', { client: 'member' })).outcome).toBe('miss');
    expect(budget.rejections).toEqual({ fleet: 0, local: 1 });
    // A second later the bucket holds one more.
    clock.advance(1000);
    expect((await engine.get('5', { client: 'scanner' })).outcome).toBe('miss');
    await expect(engine.get('6', { client: 'scanner' })).rejects.toMatchObject({ code: 'RATE_LIMITED' });
  });

  it('never charges a collapsed wait, and charges a load to a waiting client with budget when its starter has none', async () => {
    const held = deferred<void>();
    let hold = false;
    const calls: string[] = [];
    const { engine } = budgeted({
      burst: 1,
      load: async (key) => {
        calls.push(key);
        if (hold) await held.promise;
        return { id: key };
      },
    });
    await engine.get('1', { client: 'scanner' }); // its one miss
    hold = true;
    // The member's load is in flight; the scanner, over budget, joins it for free.
    const member = engine.get('10', { client: 'member' });
    const scanner = engine.get('10', { client: 'scanner' });
    held.resolve();
    expect((await member).outcome).toBe('miss');
    expect((await scanner).outcome).toBe('collapsed');
    // Started by the scanner, over budget: the load is charged to another client waiting on it.
    const started = engine.get('21', { client: 'scanner' });
    const joined = engine.get('21', { client: 'another' });
    expect((await started).entry.value).toEqual({ id: '21' });
    expect((await joined).outcome).toBe('collapsed');
    expect(calls).toEqual(['1', '10', '21']);
  });

  it('serves a stale copy to a client over budget (stale answers are free)', async () => {
    const { engine, clock } = budgeted({ burst: 1, perSecond: 0.001, ttlMs: 1000, staleTtlMs: 0 });
    await engine.get('1', { client: 'scanner' });
    clock.advance(1500);
    const stale = await engine.get('1', { client: 'scanner' });
    expect(stale.outcome).toBe('stale-if-error');
    expect(stale.error?.code).toBe('RATE_LIMITED');
  });

  it('charges nothing without a client (refreshes, warm start, library calls)', async () => {
    const { engine, calls } = budgeted({ burst: 1 });
    for (const id of ['1', '2', '3']) await engine.get(id);
    expect(calls).toEqual(['1', '2', '3']);
  });

  it('keeps at most maxClients buckets (the least recently seen go first)', () => {
    const budget = new MissBudget({ burst: 1, perSecond: 0.001, maxClients: 2, clock: new ManualClock() });
    expect(budget.take('a')).toBe(true);
    expect(budget.take('a')).toBeInstanceOf(ProxyError);
    budget.take('b');
    budget.take('c'); // a is forgotten: its bucket starts full again
    expect(budget.take('a')).toBe(true);
    expect(() => new MissBudget({ burst: 0 })).toThrow(/burst/);
  });
});

async function proxy(config: Partial<SidecarConfig> = {}): Promise<RunningSidecar> {
  backend ??= await startMockBackend({ latencyMs: 0, latencyJitterMs: 0 });
  const sidecar = await startSidecar({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    upstreamUrl: backend.url,
    missBudget: 'on',
    missBudgetBurst: 5,
    missBudgetPerSecond: 0.01,
    missBudgetClientHeader: 'x-client-id',
    ...config,
  });
  sidecars.push(sidecar);
  return sidecar;
}

const as = (client: string) => ({ headers: { 'x-client-id': client } });

describe('the miss budget over HTTP', () => {
  it('answers a scanner 429 with Retry-After and RateLimit headers after its budget, nobody else', async () => {
    const sidecar = await proxy();
    await fetch(`${sidecar.url}/groups/1`, as('member'));
    for (let id = 100; id < 105; id++)
      expect((await fetch(`${sidecar.url}/groups/${id}`, as('scanner'))).status).toBe(200);
    const refused = await fetch(`${sidecar.url}/groups/105`, as('scanner'));
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('RATE_LIMITED');
    expect(refused.headers.get('retry-after')).toBe('100');
    expect(refused.headers.get('ratelimit-policy')).toBe('"misses";q=5;w=500');
    expect(refused.headers.get('ratelimit')).toBe('"misses";r=0;t=100');
    expect(refused.headers.get('cache-control')).toBe('no-store');
    // The scanner's hits, and another client's misses, are unaffected.
    expect((await fetch(`${sidecar.url}/groups/1`, as('scanner'))).status).toBe(200);
    expect((await fetch(`${sidecar.url}/groups/106`, as('member'))).status).toBe(200);
    // A multi-get answers the refused ids alone.
    const many = await fetch(`${sidecar.url}/groups?ids=1,107`, as('scanner'));
    expect(many.status).toBe(200);
    const body = (await many.json()) as Record<string, { error?: { code: string } }>;
    expect(body['1']!.error).toBeUndefined();
    expect(body['107']!.error?.code).toBe('RATE_LIMITED');
    expect(many.headers.get('retry-after')).toBe('100');
    expect(many.headers.get('ratelimit-policy')).toBe('"misses";q=5;w=500');
    const metrics = await (await fetch(`${sidecar.url}/metrics`)).text();
    expect(metrics).toContain('gpp_miss_budget_rejections_total{reason="local"} 2');
  });

  it('takes the last element of a listed header (the one the trusted proxy added), else the connection address', async () => {
    const sidecar = await proxy({ missBudgetClientHeader: 'x-forwarded-for', missBudgetBurst: 1 });
    expect(
      (await fetch(`${sidecar.url}/groups/200`, { headers: { 'x-forwarded-for': 'spoofed, 10.0.0.1' } })).status,
    ).toBe(200);
    expect(
      (await fetch(`${sidecar.url}/groups/201`, { headers: { 'x-forwarded-for': 'other, 10.0.0.1' } })).status,
    ).toBe(429);
    expect((await fetch(`${sidecar.url}/groups/202`, { headers: { 'x-forwarded-for': '10.0.0.2' } })).status).toBe(200);
    expect((await fetch(`${sidecar.url}/groups/203`)).status).toBe(200); // 127.0.0.1
    expect((await fetch(`${sidecar.url}/groups/204`)).status).toBe(429);
  });

  it('is one budget for the fleet through Redis, and this instance’s own while Redis is gone', async () => {
    const redis = await startRedisServer();
    servers.push(redis);
    const shared = { redisUrl: redis.url, redisPrefix: uniquePrefix(), redisCommandTimeoutMs: 2000 };
    const a = await proxy(shared);
    const b = await proxy(shared);
    for (let id = 300; id < 305; id++)
      expect((await fetch(`${(id % 2 === 0 ? a : b).url}/groups/${id}`, as('scanner'))).status).toBe(200);
    expect((await fetch(`${b.url}/groups/305`, as('scanner'))).status).toBe(429);
    expect((await fetch(`${a.url}/groups/306`, as('scanner'))).status).toBe(429);
    expect(a.budget!.rejections.fleet + b.budget!.rejections.fleet).toBe(2);
    await redis.stop();
    // Degraded to a budget per instance: a fresh one for the scanner here, and existing groups load.
    for (let id = 400; id < 405; id++) expect((await fetch(`${a.url}/groups/${id}`, as('scanner'))).status).toBe(200);
    expect((await fetch(`${a.url}/groups/405`, as('scanner'))).status).toBe(429);
    expect(a.budget!.rejections.local).toBe(1);
  });
});

describe('the fleet bucket and clock skew (failed before: an instance whose clock ran ahead refilled the bucket at every call)', () => {
  it('refills on Redis’ clock, whatever the instances’ clocks say', async () => {
    const prefix = uniquePrefix();
    const behind = new ManualClock(1_700_000_000_000);
    const ahead = new ManualClock(1_700_000_000_000 + 60_000);
    const a = new RedisTier({ url: inject('redisUrl'), prefix, clock: behind, commandTimeoutMs: 2000 });
    const b = new RedisTier({ url: inject('redisUrl'), prefix, clock: ahead, commandTimeoutMs: 2000 });
    try {
      await until(() => a.healthy && b.healthy, 'both Redis clients ready', 10_000);
      const budgets = [
        new MissBudget({ burst: 2, perSecond: 0.01, l2: a, clock: behind }),
        new MissBudget({ burst: 2, perSecond: 0.01, l2: b, clock: ahead }),
      ];
      const answers: boolean[] = [];
      for (let i = 0; i < 6; i++) answers.push((await budgets[i % 2]!.take('skewed')) === true);
      expect(answers).toEqual([true, true, false, false, false, false]);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
