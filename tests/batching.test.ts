import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { RedisTier } from '../src/shared-tier/redis/redis-tier.js';
import { uniquePrefix, waitUntilHealthy } from './helpers/fleet.js';
import { createGroupProfileCache, type GroupProfileCache } from '../src/index.js';
import { BatchLoader } from '../src/origin/batch-loader.js';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { startStack, type Stack } from './helpers/stack.js';

let backend: RunningMockBackend | undefined;
let cache: GroupProfileCache | undefined;
let stack: Stack | undefined;
afterEach(async () => {
  await cache?.close();
  await backend?.close();
  await stack?.close();
  cache = backend = stack = undefined;
});

async function setup(batch: { windowMs?: number; maxIds?: number } | undefined, backendOptions = {}) {
  backend = await startMockBackend({ latencyMs: 50, latencyJitterMs: 0, ...backendOptions });
  cache = createGroupProfileCache({ upstream: { url: backend.url }, batch, staleTtlMs: 0, negativeStaleTtlMs: 0 });
  return { backend, engine: cache.engine };
}

describe('batching distinct ids', () => {
  it('loads 1000 distinct cold ids in at most 10 upstream calls of at most 100 ids', async () => {
    const { backend, engine } = await setup({ windowMs: 2, maxIds: 100 });
    const lookups = await Promise.all(Array.from({ length: 1000 }, (_, i) => engine.get(String(1 + i))));
    for (const [i, lookup] of lookups.entries()) expect(lookup.entry.value).toMatchObject({ id: 1 + i });
    const stats = backend.backend.stats();
    expect(stats.calls).toBeLessThanOrEqual(10);
    expect(stats.batchCalls).toBe(stats.calls);
    expect(stats.batchIds).toBe(1000);
  });

  it('still loads each id once when duplicates are mixed in', async () => {
    const { backend, engine } = await setup({ windowMs: 2, maxIds: 100 });
    const lookups = await Promise.all(Array.from({ length: 1000 }, (_, i) => engine.get(String(1 + (i % 300)))));
    for (const [i, lookup] of lookups.entries()) expect(lookup.entry.value).toMatchObject({ id: 1 + (i % 300) });
    const stats = backend.backend.stats();
    expect(stats.batchIds).toBe(300);
    expect(Object.values(stats.byId).every((n) => n === 1)).toBe(true);
    expect(stats.calls).toBeLessThanOrEqual(3);
  });

  it('answers missing ids of a batch with negative entries', async () => {
    const { backend, engine } = await setup({ windowMs: 2, maxIds: 100 }, { missingIds: [3, 5] });
    const lookups = await Promise.all(['1', '2', '3', '4', '5'].map((id) => engine.get(id)));
    expect(lookups.map((l) => l.entry.kind)).toEqual(['found', 'found', 'missing', 'found', 'missing']);
    expect(backend.backend.stats().calls).toBe(1);
    expect((await engine.get('3')).outcome).toBe('hit');
    expect(backend.backend.stats().calls).toBe(1);
  });

  it('fails every id of a failing batch, caches nothing, and retries on the next request', async () => {
    const { backend, engine } = await setup({ windowMs: 2, maxIds: 100 });
    backend.backend.setMode('error');
    const settled = await Promise.allSettled(['1', '2', '3'].map((id) => engine.get(id)));
    expect(
      settled.every((s) => s.status === 'rejected' && (s.reason as { code: string }).code === 'UPSTREAM_STATUS'),
    ).toBe(true);
    expect(backend.backend.stats().calls).toBe(1);
    backend.backend.setMode('normal');
    expect((await engine.get('2')).outcome).toBe('miss');
    expect(backend.backend.stats().calls).toBe(2);
  });

  it('makes one call per id with batching off', async () => {
    const { backend, engine } = await setup(undefined);
    await Promise.all(Array.from({ length: 50 }, (_, i) => engine.get(String(1 + i))));
    expect(backend.backend.stats()).toMatchObject({ calls: 50, singleCalls: 50, batchCalls: 0 });
  });

  it('fails an id absent from the batch answer alone, and an id mapped to garbage alone', async () => {
    const upstream = createServer((req, res) => {
      const ids = new URL(req.url!, 'http://x').searchParams.get('ids')!.split(',');
      const body: Record<string, unknown> = {};
      for (const id of ids) if (id !== '2') body[id] = id === '3' ? 'garbage' : { id: Number(id) };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    cache = createGroupProfileCache({
      upstream: { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` },
      batch: {},
    });
    try {
      const settled = await Promise.allSettled(['1', '2', '3', '4'].map((id) => cache!.engine.get(id)));
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
      expect(
        settled.filter((s) => s.status === 'rejected').map((s) => (s as PromiseRejectedResult).reason.code),
      ).toEqual(['UPSTREAM_BAD_RESPONSE', 'UPSTREAM_BAD_RESPONSE']);
    } finally {
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });

  it('over HTTP, turns 1000 concurrent requests for distinct ids into a few batch calls', async () => {
    stack = await startStack({ latencyMs: 50 }, { upstreamBatch: 'on', batchWindowMs: 10, batchMaxIds: 100 });
    const responses = await Promise.all(Array.from({ length: 1000 }, (_, i) => stack!.get(`/groups/${20_000 + i}`)));
    responses.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).id).toBe(20_000 + i);
    });
    const stats = stack.stats();
    expect(stats.batchIds).toBe(1000);
    expect(stats.calls).toBeLessThanOrEqual(100);
    console.info(`batching over HTTP: 1000 distinct ids in ${stats.calls} upstream calls`);
  });
});

describe('batching with the shared L2 tier', () => {
  it('batches only ids this instance holds the lease for: each id reaches the upstream once across the fleet', async () => {
    backend = await startMockBackend({ latencyMs: 50, latencyJitterMs: 0 });
    const prefix = uniquePrefix();
    const tiers = [0, 1, 2].map(() => new RedisTier({ url: inject('redisUrl'), prefix, commandTimeoutMs: 2000 }));
    for (const tier of tiers) await waitUntilHealthy(tier);
    const caches = tiers.map((l2) =>
      createGroupProfileCache({ upstream: { url: backend!.url }, batch: { maxIds: 100 }, l2 }),
    );
    try {
      const lookups = await Promise.all(
        Array.from({ length: 1500 }, (_, i) => caches[i % 3]!.engine.get(String(1 + (i % 500)))),
      );
      for (const [i, lookup] of lookups.entries()) expect(lookup.entry.value).toMatchObject({ id: 1 + (i % 500) });
      const stats = backend.backend.stats();
      expect(stats.batchIds).toBe(500);
      expect(Object.values(stats.byId).every((n) => n === 1)).toBe(true);
    } finally {
      for (const c of caches) await c.close();
      for (const tier of tiers) await tier.close();
    }
  });
});

describe('BatchLoader', () => {
  it('shares one batch slot between two loads of one key', async () => {
    const calls: string[][] = [];
    const loader = new BatchLoader<number>({
      loadMany: async (keys) => {
        calls.push([...keys]);
        return new Map(keys.map((k) => [k, Number(k)]));
      },
      windowMs: 1,
    });
    const signal = new AbortController().signal;
    expect(
      await Promise.all([loader.load('1', { signal }), loader.load('1', { signal }), loader.load('2', { signal })]),
    ).toEqual([1, 1, 2]);
    expect(calls).toEqual([['1', '2']]);
  });

  it('sends a full batch at once, without waiting for the window', async () => {
    const calls: number[] = [];
    const loader = new BatchLoader<number>({
      loadMany: async (keys) => {
        calls.push(keys.length);
        return new Map(keys.map((k) => [k, 1]));
      },
      windowMs: 10_000,
      maxKeys: 3,
    });
    const signal = new AbortController().signal;
    await Promise.all(['1', '2', '3'].map((k) => loader.load(k, { signal })));
    expect(calls).toEqual([3]);
  });
});
