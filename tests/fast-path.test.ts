import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CoalescingCache, NOT_FOUND, ProxyError, createProxyApp, parseGroupId } from '../src/index.js';
import { createFastPath } from '../src/http/fast-path.js';
import { AnswerEncoder, encodeEntry } from '../src/http/respond.js';
import { deferred } from './helpers/deferred.js';

const NOW = 1_700_000_000_000;
let clock = NOW;
// Two identical engines, one behind each server, so a miss is a miss on both.
const makeEngine = () =>
  new CoalescingCache<{ id: string; name: string }>({
    load: async (key) => {
      if (key === '500') throw new ProxyError('UPSTREAM_STATUS', 'upstream answered 500');
      return key === '404' ? NOT_FOUND : { id: key, name: `group ${key}` };
    },
    ttlJitter: 0,
    now: () => clock,
  });
const engine = makeEngine();
const honoEngine = makeEngine();
const honoListener = getRequestListener(createProxyApp({ engine: honoEngine }).fetch);
const fastFallback = getRequestListener(createProxyApp({ engine }).fetch);
const fastPath = createFastPath({ engine, parseId: (raw) => parseGroupId(raw), cacheName: 'group-profile-proxy' });
let fastHits = 0;
let withFastPath: Server;
let honoOnly: Server;

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
let fastUrl = '';
let honoUrl = '';

beforeAll(async () => {
  withFastPath = createServer((req, res) => {
    if (fastPath(req, res)) fastHits++;
    else void fastFallback(req, res);
  });
  honoOnly = createServer((req, res) => void honoListener(req, res));
  fastUrl = await listen(withFastPath);
  honoUrl = await listen(honoOnly);
  // Fill both L1s alike, then move the clock so Age and max-age are non-trivial.
  for (const e of [engine, honoEngine]) {
    await e.get('42');
    await e.get('404');
  }
  clock = NOW + 12_345;
});

afterAll(async () => {
  for (const server of [withFastPath, honoOnly]) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await engine.close();
  await honoEngine.close();
});

async function answer(base: string, path: string, init: RequestInit = {}) {
  const response = await fetch(base + path, init);
  const headers = Object.fromEntries([...response.headers].filter(([name]) => name !== 'date'));
  return { status: response.status, headers, body: Buffer.from(await response.arrayBuffer()).toString('base64') };
}

describe('the L1-hit fast path answers exactly like the Hono path', () => {
  const etag = () => engine.peek('42')!.etag;
  it.each([
    ['a hit', '/groups/42', {}],
    ['a hit with a query string', '/groups/42?x=1', {}],
    ['a 304', '/groups/42', { headers: { 'if-none-match': 'ETAG' } }],
    ['a weak If-None-Match list', '/groups/42', { headers: { 'if-none-match': '"a", W/ETAG' } }],
    ['a non-matching If-None-Match', '/groups/42', { headers: { 'if-none-match': '"nope"' } }],
    ['a negative hit', '/groups/404', {}],
    ['a HEAD hit', '/groups/42', { method: 'HEAD' }],
    ['a miss', '/groups/7', {}],
    ['a negative miss', '/groups/404404', {}],
    ['an upstream failure', '/groups/500', {}],
  ])('%s', async (_name, path, init: { headers?: Record<string, string>; method?: string }) => {
    const headers = Object.fromEntries(
      Object.entries(init.headers ?? {}).map(([k, v]) => [k, v.replace('ETAG', etag())]),
    );
    const before = fastHits;
    const viaFast = await answer(fastUrl, path, { ...init, headers });
    expect(fastHits).toBe(before + 1);
    const viaHono = await answer(honoUrl, path, { ...init, headers });
    expect(viaFast).toEqual(viaHono);
  });

  it.each(['/groups/042', '/groups/42/x', '/healthz', '/groups/%34%32', '/groups/0'])(
    'leaves %s to Hono',
    async (path) => {
      const before = fastHits;
      const viaFast = await answer(fastUrl, path);
      expect(fastHits).toBe(before);
      expect(viaFast.status).toBe((await answer(honoUrl, path)).status);
    },
  );

  it('leaves other methods to Hono', async () => {
    const before = fastHits;
    expect((await fetch(`${fastUrl}/groups/42`, { method: 'POST' })).status).toBe(405);
    expect(fastHits).toBe(before);
  });
});

describe('a burst of misses on the fast path', () => {
  it('is one load; every waiter but a client that left gets the same answer as through Hono', async () => {
    const gates = [deferred<void>(), deferred<void>()];
    const loads: string[] = [];
    const gatedEngine = (gate: Promise<void>) =>
      new CoalescingCache<{ id: string; name: string }>({
        load: async (key) => {
          loads.push(key);
          await gate;
          return { id: key, name: `group ${key}` };
        },
        ttlJitter: 0,
        now: () => clock,
      });
    const fastEngine = gatedEngine(gates[0]!.promise);
    const slowEngine = gatedEngine(gates[1]!.promise);
    const fast = createFastPath({
      engine: fastEngine,
      parseId: (raw) => parseGroupId(raw),
      cacheName: 'group-profile-proxy',
    });
    const hono = getRequestListener(createProxyApp({ engine: slowEngine }).fetch);
    let fastAnswered = 0;
    // Requests each server has received: the gate opens only once all 31 are in,
    // so none can arrive after the load and be a plain hit (CI is slow and noisy).
    const received = [0, 0];
    const servers = [
      createServer((req, res) => {
        received[0]!++;
        if (fast(req, res)) fastAnswered++;
        else res.writeHead(500).end();
      }),
      createServer((req, res) => {
        received[1]!++;
        void hono(req, res);
      }),
    ];
    const [fastBase, honoBase] = await Promise.all(servers.map(listen));
    try {
      const burst = async (base: string, gate: (typeof gates)[number], server: number) => {
        // A client that sends its request and leaves before the load returns.
        const leaver = connect(Number(new URL(base).port), '127.0.0.1');
        await new Promise((resolve) => leaver.once('connect', resolve));
        leaver.write('GET /groups/77 HTTP/1.1\r\nhost: x\r\n\r\n');
        const answers = Array.from({ length: 30 }, () => answer(base, '/groups/77'));
        await vi.waitFor(() => expect(received[server]).toBe(31), { timeout: 10_000, interval: 5 });
        leaver.destroy();
        await new Promise((resolve) => setTimeout(resolve, 20));
        gate.resolve();
        return Promise.all(answers);
      };
      const viaFast = await burst(fastBase!, gates[0]!, 0);
      expect(loads).toEqual(['77']);
      const viaHono = await burst(honoBase!, gates[1]!, 1);
      expect(loads).toEqual(['77', '77']);
      expect(fastAnswered).toBe(31);
      for (const answers of [viaFast, viaHono]) {
        expect(answers.every((a) => a.status === 200)).toBe(true);
        expect(answers.filter((a) => a.headers['cache-status']!.includes('collapsed')).length).toBeGreaterThanOrEqual(
          29,
        );
      }
      const collapsed = (answers: typeof viaFast) =>
        answers.find((a) => a.headers['cache-status']!.includes('collapsed'));
      expect(collapsed(viaFast)).toEqual(collapsed(viaHono));
    } finally {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      await fastEngine.close();
      await slowEngine.close();
    }
  });
});

describe('AnswerEncoder', () => {
  // Filled by beforeAll, so read inside each test.
  let entry: NonNullable<ReturnType<typeof engine.peek>>;
  beforeAll(() => {
    entry = engine.peek('42')!;
  });

  it('shares one answer per entry and outcome within a millisecond, never across', () => {
    const encoder = new AnswerEncoder('group-profile-proxy');
    const now = clock;
    const hit = encoder.encode(entry, 'hit', now, undefined);
    expect(encoder.encode(entry, 'hit', now, undefined)).toBe(hit);
    const collapsed = encoder.encode(entry, 'collapsed', now, undefined);
    expect(collapsed).not.toBe(hit);
    expect(collapsed).toEqual(encodeEntry(entry, 'collapsed', now, undefined, 'group-profile-proxy'));
    expect(hit).toEqual(encodeEntry(entry, 'hit', now, undefined, 'group-profile-proxy'));
    const later = encoder.encode(entry, 'hit', now + 1_000, undefined);
    expect(later).not.toBe(hit);
    expect(later.headers.age).toBe(String(Number(hit.headers.age) + 1));
  });

  it('never memoizes a conditional, failed or first-load answer', () => {
    const encoder = new AnswerEncoder('group-profile-proxy');
    const now = clock;
    expect(encoder.encode(entry, 'hit', now, entry.etag).status).toBe(304);
    expect(encoder.encode(entry, 'hit', now, undefined).status).toBe(200);
    const failed = encoder.encode(entry, 'stale-if-error', now, undefined, 503);
    expect(failed.headers['cache-status']).toContain('fwd-status=503');
    expect(encoder.encode(entry, 'stale-if-error', now, undefined, 503)).not.toBe(failed);
    expect(encoder.encode(entry, 'miss', now, undefined)).not.toBe(encoder.encode(entry, 'miss', now, undefined));
  });
});
