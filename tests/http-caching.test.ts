import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CoalescingCache, NOT_FOUND, ProxyError, createProxyApp, parseGroupId } from '../src/index.js';
import { createFastPath } from '../src/http/fast-path.js';
import { manualClock } from './helpers/deferred.js';
import { startStack } from './helpers/stack.js';

type Headers = Record<string, string | undefined>;

/** Cache-Control directives as a map (`public` → '', `max-age=60` → '60'). */
function directives(headers: Headers): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (headers['cache-control'] ?? '').split(',')) {
    const [name, value] = part.trim().split('=');
    if (name) out.set(name.toLowerCase(), value ?? '');
  }
  return out;
}

/**
 * How long a downstream cache receiving these headers right now keeps the
 * response fresh, s, computed as RFC 9111 §4.2 does with no transit delay:
 * freshness_lifetime (s-maxage for a shared cache, else max-age) minus
 * current_age (the Age header).
 */
function downstreamFreshSeconds(headers: Headers, shared: boolean): number {
  const d = directives(headers);
  const lifetime = Number(shared && d.has('s-maxage') ? d.get('s-maxage') : d.get('max-age'));
  const age = Number(headers.age ?? 0);
  expect(Number.isInteger(lifetime) && lifetime >= 0, `freshness lifetime in ${headers['cache-control']}`).toBe(true);
  expect(Number.isInteger(age) && age >= 0, `Age ${headers.age}`).toBe(true);
  return lifetime - age;
}

function engineAt(
  clock: ReturnType<typeof manualClock>,
  options: { staleTtlMs?: number; negativeStaleTtlMs?: number; maxStaleMs?: number } = {},
) {
  return new CoalescingCache<{ id: string }>({
    load: async (key) => {
      if (key === '500') throw new ProxyError('UPSTREAM_STATUS', 'upstream answered 500');
      return key === '404' ? NOT_FOUND : { id: key };
    },
    ttlMs: 60_000,
    negativeTtlMs: 30_000,
    ttlJitter: 0,
    now: clock.now,
    ...options,
  });
}

const honoHeaders = (response: Response): Headers => Object.fromEntries(response.headers.entries());

describe('Cache-Control and Age as RFC 9111 reads them', () => {
  it('max-age is the full freshness lifetime and Age the time since stored, so a downstream cache expires its copy with the proxy, not early', async () => {
    const clock = manualClock();
    const engine = engineAt(clock);
    const app = createProxyApp({ engine });
    const miss = honoHeaders(await app.request('/groups/42'));
    expect(directives(miss).get('max-age')).toBe('60');
    expect(miss.age).toBe('0');
    for (const elapsed of [1, 999, 1000, 3_400, 30_000, 59_001]) {
      clock.advance(elapsed - (clock.now() - 1_700_000_000_000));
      const hit = honoHeaders(await app.request('/groups/42'));
      const proxyFreshSeconds = (60_000 - elapsed) / 1000;
      const downstream = downstreamFreshSeconds(hit, false);
      // Never fresher downstream than here, and not expired more than the Age header's rounding early.
      expect(downstream, `${elapsed} ms after the fill: ${hit['cache-control']}, age ${hit.age}`).toBeLessThanOrEqual(
        proxyFreshSeconds,
      );
      expect(downstream).toBeGreaterThan(proxyFreshSeconds - 2);
      expect(directives(hit).get('max-age')).toBe('60');
    }
    await engine.close();
  });

  it('answers a 304 with the same lifetime and Age as the 200 it stands for', async () => {
    const clock = manualClock();
    const engine = engineAt(clock);
    const app = createProxyApp({ engine });
    const etag = (await app.request('/groups/7')).headers.get('etag')!;
    clock.advance(5_500);
    const full = honoHeaders(await app.request('/groups/7'));
    const notModified = await app.request('/groups/7', { headers: { 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expect(honoHeaders(notModified)['cache-control']).toBe(full['cache-control']);
    expect(honoHeaders(notModified).age).toBe(full.age);
    expect(downstreamFreshSeconds(full, false)).toBe(54);
    await engine.close();
  });

  it('a stale answer is stale downstream too, within the same stale-while-revalidate window', async () => {
    const clock = manualClock();
    const engine = engineAt(clock, { staleTtlMs: 300_000 });
    const app = createProxyApp({ engine });
    await app.request('/groups/9');
    clock.advance(61_000);
    const stale = await app.request('/groups/9');
    expect(stale.headers.get('cache-status')).toContain('stale-while-revalidate');
    const headers = honoHeaders(stale);
    expect(downstreamFreshSeconds(headers, false)).toBeLessThanOrEqual(0);
    // Still inside the window downstream: age - lifetime ≤ stale-while-revalidate.
    expect(-downstreamFreshSeconds(headers, false)).toBeLessThanOrEqual(
      Number(directives(headers).get('stale-while-revalidate')),
    );
    await engine.close();
  });
});

describe('stale directives and s-maxage for caches in front (RFC 5861)', () => {
  it('states the proxy’s own stale-while-revalidate and stale-if-error windows, for found and negative entries', async () => {
    const clock = manualClock();
    const engine = new CoalescingCache<{ id: string }>({
      load: async (key) => (key === '404' ? NOT_FOUND : { id: key }),
      ttlMs: 60_000,
      negativeTtlMs: 30_000,
      staleTtlMs: 300_000,
      negativeStaleTtlMs: 20_000,
      maxStaleMs: 3_600_000,
      ttlJitter: 0,
      now: clock.now,
    });
    const app = createProxyApp({ engine });
    expect((await app.request('/groups/42')).headers.get('cache-control')).toBe(
      'public, max-age=60, stale-while-revalidate=300, stale-if-error=3600',
    );
    expect((await app.request('/groups/404')).headers.get('cache-control')).toBe(
      'public, max-age=30, stale-while-revalidate=20, stale-if-error=3600',
    );
    await engine.close();
  });

  it('leaves out a window that is zero, and adds s-maxage when configured', async () => {
    const clock = manualClock();
    const engine = engineAt(clock, { staleTtlMs: 0, negativeStaleTtlMs: 0, maxStaleMs: 0 });
    const app = createProxyApp({ engine, sMaxAgeSeconds: 600 });
    const headers = honoHeaders(await app.request('/groups/42'));
    expect(headers['cache-control']).toBe('public, max-age=60, s-maxage=600');
    clock.advance(10_000);
    const later = honoHeaders(await app.request('/groups/42'));
    expect(downstreamFreshSeconds(later, true)).toBe(590);
    expect(downstreamFreshSeconds(later, false)).toBe(50);
    await engine.close();
  });

  it('the sidecar’s fast path and its Hono routes send the same Cache-Control, S_MAXAGE_SECONDS included', async () => {
    const stack = await startStack({ latencyMs: 0 }, { sMaxAgeSeconds: 120 });
    try {
      const viaFastPath = await stack.get('/groups/42');
      const viaHono = await stack.get('/groups/42', { 'if-none-match': '"nope"' });
      expect(viaFastPath.status).toBe(200);
      expect(viaFastPath.headers['cache-control']).toMatch(
        /^public, max-age=\d+, stale-while-revalidate=300, stale-if-error=3600, s-maxage=120$/,
      );
      expect(viaHono.headers['cache-control']).toBe(viaFastPath.headers['cache-control']);
    } finally {
      await stack.close();
    }
  });

  it('the fast path states the same directives as the Hono route for the same entry', async () => {
    const clock = manualClock();
    const engine = engineAt(clock, { staleTtlMs: 120_000 });
    const fastPath = createFastPath({
      engine,
      parseId: (raw) => parseGroupId(raw),
      cacheName: 'group-profile-proxy',
      sMaxAgeSeconds: 30,
    });
    const app = createProxyApp({ engine, sMaxAgeSeconds: 30 });
    await engine.get('5');
    clock.advance(2_500);
    const server = createServer((req, res) => void fastPath(req, res));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fast = await getHeaders(`http://127.0.0.1:${(server.address() as AddressInfo).port}/groups/5`);
    const hono = honoHeaders(await app.request('/groups/5'));
    expect(fast['cache-control']).toBe(hono['cache-control']);
    expect(fast.age).toBe(hono.age);
    await engine.close();
  });
});

const servers: Server[] = [];
afterAll(async () => {
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
});

function getHeaders(url: string): Promise<IncomingHttpHeaders & Headers> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.headers as IncomingHttpHeaders & Headers));
    })
      .on('error', reject)
      .end();
  });
}
