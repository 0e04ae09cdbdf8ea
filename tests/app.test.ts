import { describe, expect, it } from 'vitest';
import { CoalescingCache, NOT_FOUND, createProxyApp, type Loader } from '../src/index.js';

function setup(overrides: { load?: Loader<{ id: string }>; maxGroupId?: number } = {}) {
  const calls: string[] = [];
  const load: Loader<{ id: string }> = overrides.load ?? (async (key) => (key === '404' ? NOT_FOUND : { id: key }));
  const engine = new CoalescingCache({
    load: (key, ctx) => {
      calls.push(key);
      return load(key, ctx);
    },
    ttlMs: 60_000,
    ttlJitter: 0,
    now: () => 1_700_000_000_000,
  });
  const app = createProxyApp({ engine, maxGroupId: overrides.maxGroupId });
  return { app, calls, engine };
}

describe('GET /groups/:id', () => {
  it('answers a miss, then a hit, with caching headers and RFC 9211 Cache-Status', async () => {
    const { app, calls } = setup();
    const miss = await app.request('/groups/42');
    expect(miss.status).toBe(200);
    expect(await miss.json()).toEqual({ id: '42' });
    expect(miss.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(miss.headers.get('cache-status')).toBe('group-profile-proxy; fwd=miss; stored');
    expect(miss.headers.get('cache-control')).toBe(
      'public, max-age=60, stale-while-revalidate=300, stale-if-error=3600',
    );
    expect(miss.headers.get('age')).toBe('0');
    const etag = miss.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);

    const hit = await app.request('/groups/42');
    expect(hit.status).toBe(200);
    expect(hit.headers.get('etag')).toBe(etag);
    expect(hit.headers.get('cache-status')).toBe('group-profile-proxy; hit; ttl=60');
    expect(calls).toEqual(['42']);
  });

  it.each([
    ['the exact tag', (etag: string) => etag],
    ['a weak form of the tag', (etag: string) => `W/${etag}`],
    ['a list holding the tag', (etag: string) => `"nope", ${etag}`],
    ['a wildcard', () => '*'],
  ])('answers 304 with no body for %s in If-None-Match', async (_name, header) => {
    const { app } = setup();
    const etag = (await app.request('/groups/7')).headers.get('etag')!;
    const response = await app.request('/groups/7', { headers: { 'if-none-match': header(etag) } });
    expect(response.status).toBe(304);
    expect(await response.text()).toBe('');
    expect(response.headers.get('etag')).toBe(etag);
    expect(response.headers.get('cache-control')).toMatch(
      /^public, max-age=60, stale-while-revalidate=300, stale-if-error=3600$/,
    );
  });

  it('answers 200 when If-None-Match does not match', async () => {
    const { app } = setup();
    await app.request('/groups/7');
    const response = await app.request('/groups/7', { headers: { 'if-none-match': '"other"' } });
    expect(response.status).toBe(200);
  });

  it('answers a missing group with 404, then from the negative cache', async () => {
    const { app, calls } = setup();
    const first = await app.request('/groups/404');
    expect(first.status).toBe(404);
    expect(await first.json()).toEqual({ error: { code: 'GROUP_NOT_FOUND', message: 'group 404 does not exist' } });
    expect(first.headers.get('etag')).toBeNull();
    const second = await app.request('/groups/404');
    expect(second.status).toBe(404);
    expect(second.headers.get('cache-status')).toMatch(/; hit; ttl=\d+; detail=negative$/);
    expect(calls).toEqual(['404']);
  });

  it('answers HEAD like GET without a body', async () => {
    const { app } = setup();
    const response = await app.request('/groups/42', { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.headers.get('etag')).toBeTruthy();
    expect(await response.text()).toBe('');
  });

  it('maps a loader failure to a JSON error with a stable code and no-store', async () => {
    const { app } = setup({ load: () => Promise.reject(new Error('socket hang up')) });
    const response = await app.request('/groups/1');
    expect(response.status).toBe(502);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('UPSTREAM_BAD_RESPONSE');
  });
});

const MALFORMED_IDS: [string, number][] = [
  ['/groups/0', 400],
  ['/groups/-1', 400],
  ['/groups/+42', 400],
  ['/groups/042', 400],
  ['/groups/00', 400],
  ['/groups/4e2', 400],
  ['/groups/4.2', 400],
  ['/groups/42.0', 400],
  ['/groups/0x2a', 400],
  ['/groups/42abc', 400],
  ['/groups/abc', 400],
  ['/groups/%34%32', 400],
  ['/groups/%2042', 400],
  ['/groups/42%20', 400],
  ['/groups/42%00', 400],
  ['/groups/%EF%BC%94%EF%BC%92', 400], // full-width ４２
  ['/groups/%D9%A4%D9%A2', 400], // Arabic-Indic ٤٢
  ['/groups/9007199254740992', 400], // 2^53
  ['/groups/99999999999999999999', 400],
  ['/groups/Infinity', 400],
  ['/groups/NaN', 400],
  ['/groups/1_000', 400],
  ['/groups/%2e%2e', 404], // URL normalisation: the path becomes /
  ['/groups/..%2F42', 400],
  ['/groups/42/extra', 404],
  ['/groups/', 404],
];

describe('id validation', () => {
  it.each(MALFORMED_IDS)('rejects %s with %i before any lookup', async (path, status) => {
    const { app, calls, engine } = setup();
    const response = await app.request(path);
    expect(response.status).toBe(status);
    const body = (await response.json()) as { error: { code: string } };
    expect(body.error.code).toBe(status === 400 ? 'INVALID_GROUP_ID' : 'ROUTE_NOT_FOUND');
    expect(calls).toEqual([]);
    expect(engine.stats().l1Entries).toBe(0);
  });

  it('answers /groups without ids as a malformed multi-get, before any lookup', async () => {
    const { app, calls } = setup();
    const response = await app.request('/groups');
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
    expect(calls).toEqual([]);
  });

  it('rejects ids above maxGroupId', async () => {
    const { app, calls } = setup({ maxGroupId: 1000 });
    expect((await app.request('/groups/1000')).status).toBe(200);
    expect((await app.request('/groups/1001')).status).toBe(400);
    expect(calls).toEqual(['1000']);
  });

  it('accepts the largest safe integer by default', async () => {
    const { app } = setup();
    expect((await app.request('/groups/9007199254740991')).status).toBe(200);
  });
});

describe('other routes', () => {
  it('answers /healthz without touching the cache', async () => {
    const { app, calls } = setup();
    const response = await app.request('/healthz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
    expect(calls).toEqual([]);
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH'])('answers %s /groups/:id with 405 and Allow', async (method) => {
    const { app, calls } = setup();
    const response = await app.request('/groups/42', { method });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, HEAD');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('METHOD_NOT_ALLOWED');
    expect(calls).toEqual([]);
  });

  it.each(['/', '/group/1', '/http://example.com/', '/groups/1?url=http://evil'])(
    'never proxies anything but profiles: %s',
    async (path) => {
      const { app, calls } = setup();
      const response = await app.request(path);
      if (path.startsWith('/groups/1?')) {
        expect(response.status).toBe(200);
        expect(calls).toEqual(['1']);
      } else {
        expect(response.status).toBe(404);
        expect(calls).toEqual([]);
      }
    },
  );
});
