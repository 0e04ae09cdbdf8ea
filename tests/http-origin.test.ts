import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createGroupProfileCache, HttpOrigin, NOT_FOUND, ProxyError } from '../src/index.js';

let server: Server | undefined;
let origin: HttpOrigin | undefined;

afterEach(async () => {
  vi.useRealTimers();
  await origin?.close();
  server?.closeAllConnections();
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = origin = undefined;
});

/** A real upstream on a free loopback port; counts the TCP connections it accepts. */
async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { connections: 0, requests: [] as IncomingMessage[] };
  server = createServer((req, res) => {
    seen.requests.push(req);
    handler(req, res);
  });
  server.on('connection', () => seen.connections++);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const context = () => ({ signal: new AbortController().signal });

describe('HttpOrigin over node:http', () => {
  it('reuses one keep-alive connection, sends only its own headers and maps 404 to NOT_FOUND', async () => {
    const { url, seen } = await upstream((req, res) => {
      if (req.url === '/groups/404') return res.writeHead(404).end('gone');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: req.url!.split('/').pop() }));
    });
    origin = new HttpOrigin({ url });
    for (const id of ['1', '2', '404', '3']) {
      const loaded = await origin.load(id, context());
      expect(loaded).toEqual(id === '404' ? NOT_FOUND : { id });
    }
    expect(seen.connections).toBe(1);
    expect(Object.keys(seen.requests[0]!.headers).sort()).toEqual(['accept', 'connection', 'host', 'user-agent']);
  });

  it('never opens more than `connections` connections', async () => {
    const { url, seen } = await upstream((_req, res) => setTimeout(() => res.end('{}'), 20));
    origin = new HttpOrigin({ url, connections: 2 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => origin!.load(String(i + 1), context())));
    expect(seen.requests).toHaveLength(10);
    expect(seen.connections).toBe(2);
  });

  it('fails a body cut short by the upstream as UPSTREAM_UNREACHABLE, and a hung one as UPSTREAM_TIMEOUT', async () => {
    const { url } = await upstream((req, res) => {
      if (req.url === '/groups/1') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('{"id":');
        setTimeout(() => res.destroy(), 10);
      }
      // /groups/2: never answers.
    });
    origin = new HttpOrigin({ url, timeoutMs: 100 });
    await expect(origin.load('1', context())).rejects.toMatchObject({ code: 'UPSTREAM_UNREACHABLE', status: 502 });
    await expect(origin.load('2', context())).rejects.toMatchObject({ code: 'UPSTREAM_TIMEOUT', status: 504 });
  });

  it('refuses a body over maxBodyBytes, declared or streamed', async () => {
    const { url } = await upstream((req, res) => {
      if (req.url === '/groups/1') return res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000));
      res.writeHead(200);
      res.write('x'.repeat(3000));
      res.end('x'.repeat(3000));
    });
    origin = new HttpOrigin({ url, maxBodyBytes: 4096 });
    await expect(origin.load('1', context())).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    await expect(origin.load('2', context())).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
  });

  it('times the upstream from when the request has a connection, not while it waits inside the proxy for one', async () => {
    const held: ServerResponse[] = [];
    const { url, seen } = await upstream((_req, res) => held.push(res));
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    origin = new HttpOrigin({ url, connections: 1, timeoutMs: 1000 });
    const first = origin.load('1', context());
    const second = origin.load('2', context()); // queued for the one connection
    await until(() => seen.requests.length === 1);
    vi.advanceTimersByTime(900);
    held[0]!.end('{"id":1}');
    expect(await first).toEqual({ id: 1 });
    await until(() => seen.requests.length === 2);
    // 1100 ms since `second` was asked for, 200 ms of them at the upstream: not late.
    vi.advanceTimersByTime(200);
    held[1]!.end('{"id":2}');
    expect(await second).toEqual({ id: 2 });
  });

  it('does not time out an answer that arrived while the event loop was busy past the deadline', async () => {
    const { url } = await upstream((_req, res) => {
      // The answer is in the proxy's socket buffer; the deadline then passes before the proxy reads it,
      // as when a burst keeps the event loop busy longer than the upstream timeout.
      res.once('finish', () => setImmediate(() => vi.advanceTimersByTime(1001)));
      res.end('{"id":7}');
    });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    origin = new HttpOrigin({ url, timeoutMs: 1000 });
    expect(await origin.load('7', context())).toEqual({ id: 7 });
  });

  it('refuses a profile whose id is not the id asked for, alone and in a batch; accepts the id as number or string, or no id', async () => {
    const { url } = await upstream((req, res) => {
      const answers: Record<string, string> = {
        '/groups/42': '{"id":43,"name":"someone else"}',
        '/groups/44': '{"id":"44"}',
        '/groups/45': '{"name":"no id field"}',
        '/groups/46': '{"id":"046"}',
        '/groups?ids=1,2,3,4': '{"1":{"id":1},"2":{"id":3},"3":null,"4":{"id":"x"}}',
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(answers[req.url!] ?? '{}');
    });
    origin = new HttpOrigin({ url });
    await expect(origin.load('42', context())).rejects.toMatchObject({
      code: 'UPSTREAM_BAD_RESPONSE',
      status: 502,
      message: expect.stringContaining('43'),
    });
    expect(await origin.load('44', context())).toEqual({ id: '44' });
    expect(await origin.load('45', context())).toEqual({ name: 'no id field' });
    await expect(origin.load('46', context())).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    const batch = await origin.loadMany(['1', '2', '3', '4'], context());
    expect(batch.get('1')).toEqual({ id: 1 });
    expect(batch.get('2')).toBeInstanceOf(ProxyError);
    expect(batch.get('2')).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    expect(batch.get('3')).toBe(NOT_FOUND);
    expect(batch.get('4')).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
  });

  it('caches nothing from a wrong-id answer, so it never becomes a stale fallback', async () => {
    let wrong = true;
    const { url, seen } = await upstream((_req, res) => res.writeHead(200).end(wrong ? '{"id":8}' : '{"id":7}'));
    const cache = createGroupProfileCache({ upstream: { url }, ttlJitter: 0 });
    try {
      await expect(cache.engine.get('7')).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
      expect(cache.engine.peek('7')).toBeUndefined();
      wrong = false;
      const lookup = await cache.engine.get('7');
      expect(lookup.outcome).toBe('miss');
      expect(lookup.entry.value).toEqual({ id: 7 });
      expect(seen.requests).toHaveLength(2);
    } finally {
      await cache.close();
    }
  });

  it('does not count a stall of its own event loop against the upstream deadline', async () => {
    const held: ServerResponse[] = [];
    const { url, seen } = await upstream((_req, res) => held.push(res));
    origin = new HttpOrigin({ url, timeoutMs: 100 });
    const load = origin.load('9', context());
    await until(() => seen.requests.length === 1);
    // The proxy's loop is blocked for 6× the upstream timeout (a burst being parsed); the upstream
    // answers 20 ms after the loop is free again, 20 ms of upstream time in all.
    const blockedUntil = performance.now() + 600;
    while (performance.now() < blockedUntil);
    setTimeout(() => held[0]!.end('{"id":9}'), 20);
    expect(await load).toEqual({ id: 9 });
  });

  it('still times out an upstream that has not answered when the deadline is checked', async () => {
    const { url, seen } = await upstream(() => {});
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    origin = new HttpOrigin({ url, timeoutMs: 1000 });
    const load = origin.load('8', context());
    await until(() => seen.requests.length === 1);
    // Past the deadline and past any extension a stall of the (real, possibly busy) event loop can
    // earn: at most tenfold the timeout.
    vi.advanceTimersByTime(11 * 1000 + 1);
    await expect(load).rejects.toMatchObject({ code: 'UPSTREAM_TIMEOUT', status: 504 });
  });
});

/** Yields to real I/O until `condition` holds (timers may be faked; setImmediate is not). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100_000 && !condition(); i++) await new Promise((resolve) => setImmediate(resolve));
  if (!condition()) throw new Error('condition never held');
}
