import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpOrigin } from '../src/origin/http-origin.js';
import { BloomBits, bloomPositions, bloomShape, falsePositiveRateOf } from '../src/penetration/bloom.js';
import { ExistenceFilter } from '../src/penetration/existence-filter.js';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { mulberry32 } from '../src/mock-backend/prng.js';
import { startSidecar, type RunningSidecar } from '../src/server/sidecar.js';
import type { SidecarConfig } from '../src/server/config.js';
import { uniquePrefix } from './helpers/fleet.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';

const MAX_ID = 20_000;

let backend: RunningMockBackend | undefined;
const sidecars: RunningSidecar[] = [];
const servers: RedisServer[] = [];
afterEach(async () => {
  for (const sidecar of sidecars.splice(0)) await sidecar.close();
  for (const server of servers.splice(0)) await server.stop();
  await backend?.close();
  backend = undefined;
});

/** Ids no group has: above the mock's id space, drawn from a seeded source. */
function madeUpIds(count: number, seed: number): string[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, () => String(MAX_ID + 1 + Math.floor(random() * 1e12)));
}

async function proxy(config: Partial<SidecarConfig> = {}): Promise<RunningSidecar> {
  backend ??= await startMockBackend({ latencyMs: 0, latencyJitterMs: 0, maxId: MAX_ID });
  const sidecar = await startSidecar({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    upstreamUrl: backend.url,
    existenceFilter: 'on',
    upstreamIdExport: 'on',
    existenceFilterExpectedIds: 1_000_000,
    ...config,
  });
  sidecars.push(sidecar);
  return sidecar;
}

describe('the Bloom filter', () => {
  it('is sized from the expected count and rate: 10 million ids at 1 % take 12 MB and 7 hashes', () => {
    const shape = bloomShape(10_000_000, 0.01);
    expect(shape.hashes).toBe(7);
    expect(shape.bits / 8 / 1e6).toBeCloseTo(11.98, 1);
  });

  it('keeps its false-positive rate within the target when it holds the expected count (measured over 100,000 absent ids)', () => {
    const shape = bloomShape(100_000, 0.01);
    const bits = new BloomBits(shape);
    const positions: number[] = [];
    for (let id = 1; id <= 100_000; id++) bits.set(bloomPositions(String(id), shape, positions));
    let missed = 0;
    for (let id = 1; id <= 100_000; id++) if (!bits.has(bloomPositions(String(id), shape, positions))) missed++;
    expect(missed).toBe(0); // no false negatives, ever
    let falsePositives = 0;
    for (const id of madeUpIds(100_000, 3)) if (bits.has(bloomPositions(id, shape, positions))) falsePositives++;
    const measured = falsePositives / 100_000;
    // 1 % expected; the standard deviation over 100,000 draws is 0.03 %.
    expect(measured).toBeLessThan(0.0115);
    expect(falsePositiveRateOf(shape, bits.setBits)).toBeCloseTo(0.01, 2);
  });
});

describe('an authoritative filter (filled from the upstream id export)', () => {
  it('answers 10,000 made-up ids with 404 and no origin call, every existing id still answered', async () => {
    const sidecar = await proxy();
    await sidecar.existence!.start();
    expect(sidecar.existence!.authoritative).toBe(true);
    expect(backend!.backend.stats().exportCalls).toBe(2); // 20,000 ids in pages of 10,000
    const callsBefore = backend!.backend.stats().calls;
    const absent = madeUpIds(10_000, 1);
    for (let i = 0; i < absent.length; i += 100) {
      const response = await fetch(`${sidecar.url}/groups?ids=${absent.slice(i, i + 100).join(',')}`);
      const body = (await response.json()) as Record<string, { error?: { code: string } }>;
      expect(Object.values(body).every((answer) => answer.error?.code === 'GROUP_NOT_FOUND')).toBe(true);
    }
    const single = await fetch(`${sidecar.url}/groups/${absent[0]}`);
    expect(single.status).toBe(404);
    expect(single.headers.get('cache-status')).toBe('group-profile-proxy; detail=existence-filter');
    expect(backend!.backend.stats().calls).toBe(callsBefore);
    // Nothing was cached for them: L1 holds no negative entries to evict real profiles.
    expect(sidecar.cache.engine.stats().l1Entries).toBe(0);
    for (let id = 1; id <= MAX_ID; id += 97) expect((await fetch(`${sidecar.url}/groups/${id}`)).status).toBe(200);
    expect(sidecar.existence!.stats().checks.absent).toBe(10_001);
  });

  it('learns a group created after the fill from its change, and answers it', async () => {
    const sidecar = await proxy({ adminToken: 'a-token-of-16-chars-or-more' });
    await sidecar.existence!.start();
    const created = String(MAX_ID + 5);
    expect((await fetch(`${sidecar.url}/groups/${created}`)).status).toBe(404);
    await fetch(`${backend!.url}/__create/${created}`, { method: 'POST' });
    await sidecar.cache.engine.invalidate(created); // the producer announces the new group
    const response = await fetch(`${sidecar.url}/groups/${created}`);
    expect(response.status).toBe(200);
  });

  it('keeps the filter as it was (not authoritative) when the export does not advance', async () => {
    let failed: Error | undefined;
    const stuck = new ExistenceFilter({
      expectedIds: 1000,
      exportIds: async (after) => ({ ids: ['1'], next: after ?? '1' }),
      onFill: ({ error }) => (failed = error),
    });
    await stuck.start();
    expect(failed?.message).toMatch(/did not advance/);
    expect(stuck.authoritative).toBe(false);
    expect(stuck.check('99')).toBe('maybe');
    stuck.close();
  });
});

describe('refreshes', () => {
  it('rebuilds from the export every refreshMs on its clock: a deleted group drops out, a new one comes in', async () => {
    const { ManualClock } = await import('../src/util/clock.js');
    const clock = new ManualClock();
    const existing = new Set(['1', '2', '3']);
    let pages = 0;
    const filter = new ExistenceFilter({
      expectedIds: 1000,
      refreshMs: 60_000,
      clock,
      exportIds: async () => {
        pages++;
        return { ids: [...existing], next: undefined };
      },
    });
    await filter.start();
    expect([filter.check('2'), filter.check('4')]).toEqual(['maybe', 'absent']);
    existing.delete('2');
    existing.add('4');
    clock.advance(60_000);
    while (pages < 2) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect([filter.check('2'), filter.check('4'), filter.check('1')]).toEqual(['absent', 'maybe', 'maybe']);
    filter.close();
    clock.advance(60_000);
    expect(pages).toBe(2); // closed: no more rounds
  });
});

describe('the upstream id export', () => {
  it.each([
    ['an id that is not canonical', '{"ids":[1,"042"],"next":null}'],
    ['ids that are not an array', '{"ids":"1,2","next":null}'],
    ['a next that is not an id', '{"ids":[1],"next":"soon"}'],
    ['more ids than asked', JSON.stringify({ ids: Array.from({ length: 11 }, (_, i) => i + 1), next: null })],
    ['no JSON object', '[1,2,3]'],
  ])('refuses a page with %s (UPSTREAM_BAD_RESPONSE)', async (_name, body) => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = new HttpOrigin({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    try {
      await expect(origin.exportIds(undefined, new AbortController().signal, 10)).rejects.toMatchObject({
        code: 'UPSTREAM_BAD_RESPONSE',
      });
    } finally {
      await origin.close();
      server.close();
    }
  });
});

describe('a filter without an export', () => {
  it('never rejects: it learns from answers and counts what it would have rejected', async () => {
    const sidecar = await proxy({ upstreamIdExport: 'off' });
    await sidecar.existence!.start();
    expect(sidecar.existence!.authoritative).toBe(false);
    const absent = madeUpIds(50, 2);
    for (const id of absent) expect((await fetch(`${sidecar.url}/groups/${id}`)).status).toBe(404);
    expect((await fetch(`${sidecar.url}/groups/42`)).status).toBe(200);
    expect(backend!.backend.stats().calls).toBe(51);
    const { checks } = sidecar.existence!.stats();
    expect(checks.observed_absent).toBe(51); // 42 too: it was not known before its first answer
    expect(checks.absent).toBe(0);
    expect(sidecar.existence!.hasLocally('42')).toBe(true);
    const metrics = await (await fetch(`${sidecar.url}/metrics`)).text();
    expect(metrics).toContain('gpp_existence_filter_checks_total{verdict="observed_absent"} 51');
    expect(metrics).toContain('gpp_existence_filter_authoritative 0');
  });
});

describe('the fleet filter in Redis', () => {
  it('is filled once for the fleet, checked by every instance, and fails open when Redis goes away', async () => {
    const redis = await startRedisServer();
    servers.push(redis);
    const shared = { redisUrl: redis.url, redisPrefix: uniquePrefix(), redisCommandTimeoutMs: 2000 };
    const a = await proxy(shared);
    await a.existence!.start();
    const b = await proxy(shared);
    await b.existence!.start();
    expect(a.existence!.stats()).toMatchObject({ authoritative: true, store: 'shared' });
    expect(b.existence!.stats()).toMatchObject({ authoritative: true, store: 'shared' });
    expect(backend!.backend.stats().exportCalls).toBe(2); // one fill for both
    const callsBefore = backend!.backend.stats().calls;
    for (const [i, id] of madeUpIds(200, 4).entries())
      expect((await fetch(`${(i % 2 === 0 ? a : b).url}/groups/${id}`)).status).toBe(404);
    expect(backend!.backend.stats().calls).toBe(callsBefore);
    expect((await fetch(`${b.url}/groups/7`)).status).toBe(200);
    const fill = b.existence!.stats().setBits / b.existence!.stats().bits;
    expect(fill).toBeGreaterThan(0);

    await redis.stop();
    // Nothing fails closed: existing groups are loaded, made-up ones go to the upstream (which says 404).
    expect((await fetch(`${a.url}/groups/8`)).status).toBe(200);
    expect((await fetch(`${a.url}/groups/${madeUpIds(1, 5)[0]}`)).status).toBe(404);
    expect(a.existence!.stats().checks.unavailable).toBeGreaterThan(0);
  });
});

describe('a shared filter whose bitmap is gone (failed before: Redis restarted empty, and every uncached group was answered 404)', () => {
  it('fails open until it is filled again, never saying absent for a group that exists', async () => {
    const { InMemoryTier, InMemoryTierStore } = await import('../src/shared-tier/memory/in-memory-tier.js');
    const { ManualClock } = await import('../src/util/clock.js');
    const clock = new ManualClock();
    const store = new InMemoryTierStore({ now: () => clock.now() });
    const tier = new InMemoryTier({ store });
    let exportWorks = true;
    const filter = new ExistenceFilter({
      expectedIds: 1000,
      l2: tier,
      clock,
      syncMs: 1000,
      exportIds: async () => {
        if (!exportWorks) throw new Error('export down');
        return { ids: ['1', '2', '3', '5'], next: undefined };
      },
    });
    await filter.start();
    expect(await filter.check('5')).toBe('maybe');
    expect(await filter.check('4')).toBe('absent');
    exportWorks = false;
    store.restart(); // the bitmap and the state are gone
    expect(await filter.check('5')).toBe('maybe');
    clock.advance(1000); // a sync finds no state, and cannot refill
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(await filter.check('5')).toBe('maybe');
    expect(filter.authoritative).toBe(false);
    filter.close();
    await tier.close();
  });
});
