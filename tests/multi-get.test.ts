import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  BatchLoader,
  CoalescingCache,
  NOT_FOUND,
  ProxyError,
  createProxyApp,
  type Loader,
  type Lookup,
} from '../src/index.js';
import type { GroupProfile } from '../src/origin/http-origin.js';
import { mulberry32 } from '../src/mock-backend/prng.js';
import { ProxyMetrics } from '../src/metrics/metrics.js';
import { deferred } from './helpers/deferred.js';
import { startFleet, type Fleet } from './helpers/fleet.js';

const NOW = 1_700_000_000_000;
type Profile = { id: string; name: string };

/** A loader that holds every load until `release()`, counting calls per id; ids in `failing` fail, `404` does not exist. */
function gatedSource(failing: ReadonlySet<string> = new Set()) {
  const calls = new Map<string, number>();
  const gate = deferred<void>();
  const load: Loader<Profile> = async (key) => {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    await gate.promise;
    if (failing.has(key)) throw new ProxyError('UPSTREAM_STATUS', 'upstream answered 500');
    return key === '404' ? NOT_FOUND : { id: key, name: `group ${key}` };
  };
  return { load, calls, release: () => gate.resolve() };
}

function appOver(
  load: Loader<Profile>,
  options: { multiGetMaxIds?: number; metrics?: ProxyMetrics; now?: () => number } = {},
) {
  const engine = new CoalescingCache<Profile>({ load, ttlMs: 60_000, ttlJitter: 0, now: options.now ?? (() => NOW) });
  return { engine, app: createProxyApp({ engine, multiGetMaxIds: options.multiGetMaxIds, metrics: options.metrics }) };
}

/** A Hono app in front of `inner` that counts the requests it has been handed. */
function counted(inner: Hono, expected: number) {
  const allSeen = deferred<void>();
  let seen = 0;
  const outer = new Hono();
  outer.use('*', async (_c, next) => {
    if (++seen === expected) allSeen.resolve();
    await next();
  });
  outer.route('/', inner);
  return { app: outer, allSeen: allSeen.promise };
}

describe('GET /groups?ids= (multi-get)', () => {
  it('shares loads per id: 200 multi-gets of 50 ids out of 500 cold ids plus 200 single requests load each id exactly once', async () => {
    const random = mulberry32(7);
    const ids = Array.from({ length: 500 }, (_, i) => String(1000 + i));
    // Every id is in some multi-get: consecutive runs of 50 from a shuffled order, wrapping around.
    const order = [...ids].sort(() => random() - 0.5);
    const multis = Array.from({ length: 200 }, (_, i) =>
      Array.from({ length: 50 }, (_, j) => order[(i * 50 + j) % order.length]!),
    );
    const singles = Array.from({ length: 200 }, (_, i) => ids[(i * 7) % ids.length]!);
    const source = gatedSource();
    const { app: inner } = appOver(source.load);
    const { app, allSeen } = counted(inner, multis.length + singles.length);
    const responses = Promise.all([
      ...multis.map((list) => app.request(`/groups?ids=${list.join(',')}`)),
      ...singles.map((id) => app.request(`/groups/${id}`)),
    ]);
    // The loads are held until the server has been handed every request and every id was asked for.
    await allSeen;
    while (source.calls.size < ids.length) await new Promise((resolve) => setImmediate(resolve));
    source.release();
    const answered = await responses;
    expect(source.calls.size).toBe(500);
    expect([...source.calls.values()].every((count) => count === 1)).toBe(true);
    for (const [i, list] of multis.entries()) {
      const response = answered[i]!;
      expect(response.status).toBe(200);
      const body = (await response.json()) as Record<string, Profile>;
      expect(Object.keys(body).sort()).toEqual([...new Set(list)].sort());
      for (const id of list) expect(body[id]).toEqual({ id, name: `group ${id}` });
    }
    for (const [i, id] of singles.entries())
      expect(await answered[multis.length + i]!.json()).toEqual({ id, name: `group ${id}` });
  });

  it('goes through the batch loader like single lookups: each id in exactly one upstream batch', async () => {
    const batches: string[][] = [];
    const gate = deferred<void>();
    const loader = new BatchLoader<Profile>({
      loadMany: async (keys) => {
        batches.push([...keys]);
        await gate.promise;
        return new Map(keys.map((key) => [key, { id: key, name: `group ${key}` }]));
      },
      windowMs: 0,
      maxKeys: 100,
    });
    const { app } = appOver(loader.load);
    const lists = [
      Array.from({ length: 60 }, (_, i) => String(1 + i)),
      Array.from({ length: 60 }, (_, i) => String(31 + i)),
    ];
    const responses = Promise.all(lists.map((list) => app.request(`/groups?ids=${list.join(',')}`)));
    while (batches.flat().length < 90) await new Promise((resolve) => setImmediate(resolve));
    gate.resolve();
    for (const response of await responses) expect(response.status).toBe(200);
    const loaded = batches.flat();
    expect(loaded.sort()).toEqual(Array.from({ length: 90 }, (_, i) => String(1 + i)).sort());
  });

  it('mixes hits, misses, a missing group and a failing id: per-id answers, the failure alone, no-store', async () => {
    const source = gatedSource(new Set(['13']));
    source.release();
    const metrics = new ProxyMetrics({ processMetrics: false });
    const { app } = appOver(source.load, { metrics });
    await app.request('/groups/1');
    const response = await app.request('/groups?ids=2,1,404,13,2');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(
      '{"2":{"id":"2","name":"group 2"},"1":{"id":"1","name":"group 1"},"404":{"error":{"code":"GROUP_NOT_FOUND","message":"group 404 does not exist"}},' +
        '"13":{"error":{"code":"UPSTREAM_STATUS","message":"upstream answered 500"}}}',
    );
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('etag')).toBeNull();
    expect(response.headers.get('cache-status')).toBe(
      'group-profile-proxy; fwd=miss; fwd-status=502; detail="miss=2 hit=1 error=1"',
    );
    expect(source.calls.get('2')).toBe(1); // asked twice, looked up once
    const scraped = await metrics.registry.metrics();
    expect(scraped).toContain('gpp_multi_get_ids_total{outcome="error"} 1');
    expect(scraped).toContain('gpp_multi_get_ids_total{outcome="hit"} 1');
    expect(scraped).toMatch(/gpp_http_requests_total\{route="\/groups",status="200",cache="miss"\} 1/);
    // The failure was not cached: the next multi-get loads 13 again.
    await app.request('/groups?ids=13');
    expect(source.calls.get('13')).toBe(2);
  });

  it('answers all-cached lists with an ETag over the result, 304 on If-None-Match, Cache-Control from the shortest-lived entry', async () => {
    let now = NOW;
    const source = gatedSource();
    source.release();
    const { app } = appOver(source.load, { now: () => now });
    await app.request('/groups?ids=5');
    now += 20_000;
    await app.request('/groups?ids=6,404');
    now += 5_000;
    const response = await app.request('/groups?ids=5,6,404');
    expect(response.status).toBe(200);
    // 5 has 35 s of freshness left, 6 has 55 s; 404 (negative, 30 s) 25 s: the answer is fresh for the least.
    expect(response.headers.get('cache-control')).toBe(
      'public, max-age=25, stale-while-revalidate=30, stale-if-error=3600',
    );
    expect(response.headers.get('age')).toBeNull();
    expect(response.headers.get('cache-status')).toBe('group-profile-proxy; hit; ttl=25; detail="hit=3"');
    const etag = response.headers.get('etag')!;
    expect(etag).toMatch(/^"m[A-Za-z0-9_-]+"$/);
    const again = await app.request('/groups?ids=5,6,404', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect(again.headers.get('etag')).toBe(etag);
    // Another list, or the same ids in another order, is another result.
    expect((await app.request('/groups?ids=6,5,404')).headers.get('etag')).not.toBe(etag);
    const head = await app.request('/groups?ids=5,6,404', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect(head.headers.get('etag')).toBe(etag);
  });

  it('states the windows an answer of stale entries has left, not the whole ones (failed before: a copy could be served stale past the proxy\u2019s own window)', async () => {
    let now = NOW;
    const source = gatedSource();
    source.release();
    const engine = new CoalescingCache<Profile>({
      load: source.load,
      ttlMs: 60_000,
      ttlJitter: 0,
      now: () => now,
      refreshAheadMs: 0,
    });
    const app = createProxyApp({ engine, sMaxAgeSeconds: 300 });
    await app.request('/groups?ids=5');
    now += 20_000;
    await app.request('/groups?ids=6');
    now += 90_000; // 5: 50 s into its 300 s stale-while-revalidate window; 6: 30 s
    const stale = await app.request('/groups?ids=5,6');
    expect(stale.headers.get('cache-status')).toBe('group-profile-proxy; hit; ttl=-50; detail="stale=2"');
    // Fresh for 0 s, revalidatable for the 250 s 5 has left, s-maxage less the oldest entry's 110 s.
    expect(stale.headers.get('cache-control')).toBe(
      'public, max-age=0, stale-while-revalidate=250, stale-if-error=3550, s-maxage=190',
    );
  });

  it.each([
    ['no ids parameter', '/groups', 'BAD_REQUEST', /missing ids/],
    ['ids given twice', '/groups?ids=1&ids=2', 'BAD_REQUEST', /once/],
    ['an empty list', '/groups?ids=', 'INVALID_GROUP_ID', /empty/],
    ['an empty element', '/groups?ids=1,,2', 'INVALID_GROUP_ID', /id 2 of the list, "",/],
    ['a trailing comma', '/groups?ids=1,2,', 'INVALID_GROUP_ID', /id 3 of the list/],
    ['an invalid id, named', '/groups?ids=1,abc,3', 'INVALID_GROUP_ID', /id 2 of the list, "abc", is not a group id/],
    ['a leading zero', '/groups?ids=1,042', 'INVALID_GROUP_ID', /"042"/],
    ['a percent-encoded id', '/groups?ids=%31', 'INVALID_GROUP_ID', /"%31"/],
    ['a percent-encoded comma', '/groups?ids=1%2C2', 'INVALID_GROUP_ID', /"1%2C2"/],
    ['a long invalid id, cut in the message', `/groups?ids=${'9'.repeat(400)}`, 'INVALID_GROUP_ID', /"9{24}…"/],
    [
      'too many ids',
      `/groups?ids=${Array.from({ length: 11 }, (_, i) => i + 1).join(',')}`,
      'TOO_MANY_GROUPS',
      /at most 10 ids/,
    ],
  ])('rejects %s with 400 and loads nothing', async (_name, path, code, message) => {
    const source = gatedSource();
    source.release();
    const { app } = appOver(source.load, { multiGetMaxIds: 10 });
    const response = await app.request(path);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toMatch(message);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(source.calls.size).toBe(0);
  });

  it('accepts exactly the maximum, ignores other query parameters, and answers other methods 405', async () => {
    const source = gatedSource();
    source.release();
    const { app } = appOver(source.load, { multiGetMaxIds: 10 });
    const ten = Array.from({ length: 10 }, (_, i) => i + 1).join(',');
    expect((await app.request(`/groups?ids=${ten}&v=2`)).status).toBe(200);
    const post = await app.request(`/groups?ids=${ten}`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('validates multiGetMaxIds once, naming it', () => {
    const { engine } = appOver(gatedSource().load);
    expect(() => createProxyApp({ engine, multiGetMaxIds: 0 })).toThrow(/multiGetMaxIds/);
    expect(() => createProxyApp({ engine, multiGetMaxIds: 1.5 })).toThrow(/multiGetMaxIds/);
  });
});

describe('getMany (the library call)', () => {
  it('answers in the order asked, duplicates once, each id with its lookup or its own error', async () => {
    const source = gatedSource(new Set(['3']));
    source.release();
    const engine = new CoalescingCache<Profile>({ load: source.load, ttlJitter: 0 });
    await engine.get('2');
    const answers = await engine.getMany(['9', '2', '3', '9', '404']);
    expect([...answers.keys()]).toEqual(['9', '2', '3', '404']);
    expect(answers.get('9')).toMatchObject({ outcome: 'miss', entry: { kind: 'found', value: { id: '9' } } });
    expect(answers.get('2')).toMatchObject({ outcome: 'hit' });
    expect(answers.get('3')).toBeInstanceOf(ProxyError);
    expect(answers.get('3')).toMatchObject({ code: 'UPSTREAM_STATUS', status: 502 });
    expect(answers.get('404')).toMatchObject({ outcome: 'miss', entry: { kind: 'missing' } });
    await engine.close();
  });
});

describe('getMany and the caller’s abort signal', () => {
  it('listens on it once, however many keys: no listener-leak warning, and every waiting key is aborted', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    const source = gatedSource();
    const engine = new CoalescingCache<Profile>({ load: source.load });
    try {
      const controller = new AbortController();
      const many = engine.getMany(
        Array.from({ length: 100 }, (_, i) => String(1 + i)),
        { signal: controller.signal },
      );
      controller.abort();
      const answers = await many;
      expect([...answers.values()].every((answer) => answer instanceof ProxyError && answer.code === 'ABORTED')).toBe(
        true,
      );
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      source.release();
      await engine.close();
    }
  });
});

describe('multi-gets across a fleet sharing Redis', () => {
  let fleet: Fleet | undefined;
  afterEach(async () => {
    await fleet?.close();
    fleet = undefined;
  });

  it('collapses partly overlapping multi-gets on two instances ([1,2] and [2,3]) on the shared id: 3 loads for 3 ids', async () => {
    const calls = new Map<string, number>();
    const gate = deferred<void>();
    let leaseWaits = 0;
    const load: Loader<GroupProfile> = async (key) => {
      calls.set(key, (calls.get(key) ?? 0) + 1);
      await gate.promise;
      return { id: Number(key), name: `group ${key}` };
    };
    fleet = await startFleet(
      2,
      { url: inject('redisUrl') },
      { engine: { load, observer: { lease: (event) => void (event === 'wait' && leaseWaits++) } } },
    );
    const [a, b] = fleet.instances;
    const both = Promise.all([a!.engine.getMany(['1', '2']), b!.engine.getMany(['2', '3'])]);
    // Held until each id has one load and the instance that lost the race for 2 waits on the other's lease.
    while (calls.size < 3 || leaseWaits < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    gate.resolve();
    const [left, right] = await both;
    expect(Object.fromEntries(calls)).toEqual({ '1': 1, '2': 1, '3': 1 });
    for (const answers of [left, right])
      expect((answers.get('2') as Lookup<GroupProfile>).entry.value).toEqual({ id: 2, name: 'group 2' });
    expect([left.get('2'), right.get('2')].map((lookup) => (lookup as { outcome: string }).outcome).sort()).toEqual([
      'collapsed',
      'miss',
    ]);
  });
});

describe('multi-get through the sidecar', () => {
  it('answers GET /groups?ids= next to the fast path, from the same cache as single lookups', async () => {
    const { startSidecar } = await import('../src/server/sidecar.js');
    const sidecar = await startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', warmStartCount: 0 });
    try {
      await fetch(`${sidecar.url}/groups/42`);
      const response = await fetch(`${sidecar.url}/groups?ids=42,43`);
      expect(response.status).toBe(200);
      const body = (await response.json()) as Record<string, { id: number }>;
      expect(body['42']!.id).toBe(42);
      expect(body['43']!.id).toBe(43);
      expect(response.headers.get('cache-status')).toBe('group-profile-proxy; fwd=miss; detail="hit=1 miss=1"');
      expect((await fetch(`${sidecar.url}/groups?ids=42,x`)).status).toBe(400);
    } finally {
      await sidecar.close();
    }
  });

  it('is on the keyed cache too, with typed keys', async () => {
    const { createKeyedCache } = await import('../src/index.js');
    const cache = createKeyedCache<number, { n: number }>({
      load: async (n) => ({ n }),
      keyFromString: Number,
      keyToString: String,
    });
    const answers = await cache.getMany([3, 1, 3]);
    expect([...answers.keys()]).toEqual([3, 1]);
    expect((answers.get(1) as Lookup<{ n: number }>).entry.value).toEqual({ n: 1 });
    await cache.close();
  });
});
