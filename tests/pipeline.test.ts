import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  CoalescingCache,
  NOT_FOUND,
  ProxyMetrics,
  createProxyApp,
  parseGroupId,
  startMockBackend,
  startSidecar,
  type RunningMockBackend,
} from '../src/index.js';
import { createFastPath } from '../src/http/fast-path.js';

// Counts the requests every fast path built in this file (the sidecar's included) took.
const fastServed = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/http/fast-path.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/http/fast-path.js')>();
  return {
    ...actual,
    createFastPath: (...args: Parameters<typeof actual.createFastPath>) => {
      const fastPath = actual.createFastPath(...args);
      return (req: IncomingMessage, res: ServerResponse): boolean => {
        const taken = fastPath(req, res);
        if (taken) fastServed.count++;
        return taken;
      };
    },
  };
});

const NOW = 1_700_000_000_000;
const clock = NOW;
const ROUTE = '/groups/:id';
const INTERNAL_BODY = { error: { code: 'INTERNAL', message: 'internal error' } };

/**
 * An engine with bugs: get() of 66 rejects and of 67 throws with plain errors,
 * hit() of 13 throws. Everything else is a real engine on a fixed clock.
 */
function faultyEngine() {
  const engine = new CoalescingCache<{ id: string }>({
    load: async (key) => (key === '404' ? NOT_FOUND : { id: key }),
    ttlJitter: 0,
    now: () => clock,
  });
  return {
    engine,
    reader: {
      hit: (key: string) => {
        if (key === '13') throw new TypeError('hit broke');
        return engine.hit(key);
      },
      get: (key: string, options?: Parameters<typeof engine.get>[1]) => {
        if (key === '66') return Promise.reject(new TypeError('get broke'));
        if (key === '67') throw new RangeError('get threw');
        return engine.get(key, options);
      },
      getMany: (keys: Iterable<string>, options?: Parameters<typeof engine.get>[1]) => {
        if ([...keys].includes('66')) throw new TypeError('getMany broke');
        return engine.getMany(keys, options);
      },
      now: () => engine.now(),
      staleWindows: () => engine.staleWindows(),
      stats: () => engine.stats(),
      invalidate: (keys: string | readonly string[]) => engine.invalidate(keys),
    },
  };
}

interface Side {
  url: string;
  lines: Record<string, unknown>[];
  errors: { error: unknown; request: unknown }[];
  metrics: ProxyMetrics;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server as the sidecar builds it (fast path, then Hono), or Hono alone, over its own faulty engine. */
async function side(withFastPath: boolean): Promise<Side> {
  const { engine, reader } = faultyEngine();
  await engine.get('42');
  await engine.get('404');
  const lines: Record<string, unknown>[] = [];
  const errors: { error: unknown; request: unknown }[] = [];
  const metrics = new ProxyMetrics({ processMetrics: false });
  const options = {
    engine: reader,
    metrics,
    accessLog: (line: object) => void lines.push(line as Record<string, unknown>),
    onError: (error: unknown, request: unknown) => errors.push({ error, request }),
  };
  const hono = getRequestListener(createProxyApp(options).fetch);
  const fastPath = withFastPath
    ? createFastPath({ ...options, parseId: (raw) => parseGroupId(raw), cacheName: 'group-profile-proxy' })
    : undefined;
  const server = createServer((req, res) => {
    let taken = false;
    try {
      taken = fastPath?.(req, res) ?? false;
    } catch {
      // A fast path that throws would take the process down; answer 599 so the test reports it instead.
      taken = true;
      res.writeHead(599).end();
    }
    if (!taken) void hono(req, res);
  });
  const url = await listen(server);
  return {
    url,
    lines,
    errors,
    metrics,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await engine.close();
    },
  };
}

async function answer(base: string, path: string, init: RequestInit = {}) {
  const response = await fetch(base + path, init);
  const headers = Object.fromEntries([...response.headers].filter(([name]) => name !== 'date'));
  return { status: response.status, headers, body: Buffer.from(await response.arrayBuffer()).toString('utf8') };
}

let fast: Side;
let hono: Side;
beforeAll(async () => {
  fast = await side(true);
  hono = await side(false);
});
afterAll(async () => {
  await fast.close();
  await hono.close();
});

/** The request on both servers: whether the fast path took it, both answers, and the access-log lines it added. */
async function onBoth(path: string, init: RequestInit = {}) {
  const [fastLines, honoLines, before] = [fast.lines.length, hono.lines.length, fastServed.count];
  const viaFast = await answer(fast.url, path, init);
  const taken = fastServed.count - before;
  const viaHono = await answer(hono.url, path, init);
  return {
    taken,
    viaFast,
    viaHono,
    fastLines: () => fast.lines.slice(fastLines),
    honoLines: () => hono.lines.slice(honoLines),
  };
}

const withoutMs = ({ ms, ...rest }: Record<string, unknown>) => {
  expect(typeof ms).toBe('number');
  return rest;
};

describe('the access log with the fast path on', () => {
  it.each([
    ['a hit', '/groups/42', {}, true, 200],
    ['a hit with a query string', '/groups/42?x=1', {}, true, 200],
    ['a HEAD hit', '/groups/42', { method: 'HEAD' }, true, 200],
    ['a negative hit', '/groups/404', {}, true, 404],
    ['a miss', '/groups/7', {}, true, 200],
    ['an invalid id (Hono)', '/groups/042', {}, false, 400],
    ['an encoded id (Hono)', '/groups/%34%32', {}, false, 400],
    ['another route (Hono)', '/healthz', {}, false, 200],
    ['another method (Hono)', '/groups/42', { method: 'POST' }, false, 405],
  ])(
    '%s: one line per request on both paths, with the same fields',
    async (_name, path, init: RequestInit, byFastPath, status) => {
      const sent = await onBoth(path, init);
      const { taken, viaFast, viaHono } = sent;
      expect(taken).toBe(byFastPath ? 1 : 0);
      expect(viaFast).toEqual(viaHono);
      // A line is written once the answer is handed to Node, which may be just after the client has it.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const [fastLines, honoLines] = [sent.fastLines(), sent.honoLines()];
      expect(honoLines).toHaveLength(1);
      expect(fastLines).toHaveLength(1);
      expect(Object.keys(fastLines[0]!).sort()).toEqual(['cache', 'method', 'ms', 'path', 'status']);
      expect(withoutMs(fastLines[0]!)).toEqual(withoutMs(honoLines[0]!));
      expect(fastLines[0]).toMatchObject({
        method: init.method ?? 'GET',
        path: path.split('?')[0],
        status,
        cache: viaFast.headers['cache-status'] ?? null,
      });
    },
  );
});

describe('an unexpected error in the engine', () => {
  it.each([
    ['get() rejects', '/groups/66', 'GET', 'get broke'],
    ['get() throws', '/groups/67', 'GET', 'get threw'],
    ['hit() throws', '/groups/13', 'GET', 'hit broke'],
    ['hit() throws on HEAD', '/groups/13?x=1', 'HEAD', 'hit broke'],
  ])(
    '%s: the same 500 INTERNAL on both paths, logged once with method and path',
    async (_name, path, method, message) => {
      const [fastErrors, honoErrors] = [fast.errors.length, hono.errors.length];
      const { taken, viaFast, viaHono } = await onBoth(path, { method });
      expect(viaFast.status).toBe(500);
      expect(taken).toBe(1);
      expect(viaFast).toEqual(viaHono);
      expect(viaFast.headers['cache-control']).toBe('no-store');
      if (method === 'GET') expect(JSON.parse(viaFast.body)).toEqual(INTERNAL_BODY);
      for (const errors of [fast.errors.slice(fastErrors), hono.errors.slice(honoErrors)]) {
        expect(errors).toHaveLength(1);
        expect((errors[0]!.error as Error).message).toBe(message);
        expect(errors[0]!.request).toEqual({ method, path: path.split('?')[0] });
      }
    },
  );
});

describe('an unexpected error on another route', () => {
  it('is answered by the same error path: logged once with method and path, the same 500 bytes', async () => {
    const { engine, reader } = faultyEngine();
    const errors: { error: unknown; request: unknown }[] = [];
    const broken = {
      ...reader,
      stats: () => {
        throw new TypeError('stats broke');
      },
    };
    const app = createProxyApp({ engine: broken, onError: (error, request) => void errors.push({ error, request }) });
    try {
      const readyz = await app.request('/readyz?verbose=1');
      const lookup = await app.request('/groups/66');
      expect(readyz.status).toBe(500);
      expect(Object.fromEntries(readyz.headers)).toEqual(Object.fromEntries(lookup.headers));
      expect(await readyz.text()).toBe(await lookup.text());
      expect(errors.map(({ error, request }) => [(error as Error).message, request])).toEqual([
        ['stats broke', { method: 'GET', path: '/readyz' }],
        ['get broke', { method: 'GET', path: '/groups/66' }],
      ]);
    } finally {
      await engine.close();
    }
  });
});

describe('one route label', () => {
  it('both paths record every answer of the lookup route under /groups/:id, alike', async () => {
    // A fresh pair, so the counts are this test's alone.
    const pair = [await side(true), await side(false)] as const;
    try {
      for (const { url } of pair) {
        const etag = (await answer(url, '/groups/42')).headers.etag!;
        for (const [path, init] of [
          ['/groups/42', { headers: { 'if-none-match': etag } }],
          ['/groups/404', {}],
          ['/groups/8', {}],
          ['/groups/042', {}],
          ['/groups/66', {}],
          ['/groups/13', {}],
        ] as const) {
          await answer(url, path, init);
        }
      }
      const samples = async (metrics: ProxyMetrics) => {
        const text = await metrics.registry.metrics();
        return text
          .split('\n')
          .filter(
            (line) =>
              line.startsWith('gpp_http_requests_total{') ||
              line.startsWith('gpp_http_request_duration_seconds_count{'),
          );
      };
      const [viaFast, viaHono] = [await samples(pair[0].metrics), await samples(pair[1].metrics)];
      expect(viaFast).toEqual([
        `gpp_http_requests_total{route="${ROUTE}",status="200",cache="miss"} 1`,
        `gpp_http_requests_total{route="${ROUTE}",status="400",cache="none"} 1`,
        `gpp_http_requests_total{route="${ROUTE}",status="500",cache="none"} 2`,
        `gpp_http_requests_total{route="${ROUTE}",status="200",cache="hit"} 1`,
        `gpp_http_requests_total{route="${ROUTE}",status="304",cache="hit"} 1`,
        `gpp_http_requests_total{route="${ROUTE}",status="404",cache="hit"} 1`,
        `gpp_http_request_duration_seconds_count{route="${ROUTE}"} 7`,
      ]);
      expect([...viaHono].sort()).toEqual([...viaFast].sort());
    } finally {
      for (const s of pair) await s.close();
    }
  });
});

describe('the sidecar with ACCESS_LOG=on', () => {
  let backend: RunningMockBackend | undefined;
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });

  it('keeps the fast path for lookups and logs one line per request on both paths', async () => {
    backend = await startMockBackend({ latencyMs: 0 });
    const logged: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n'))
          if (line !== '') logged.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const proxy = await startSidecar(
      { port: 0, host: '127.0.0.1', upstreamUrl: backend.url, accessLog: 'on' },
      { logger: pino({ level: 'info' }, sink) },
    );
    try {
      const before = fastServed.count;
      const statuses: number[] = [];
      for (const path of ['/groups/5', '/groups/5', '/groups/05', '/healthz'])
        statuses.push((await answer(proxy.url, path)).status);
      expect(statuses).toEqual([200, 200, 400, 200]);
      expect(fastServed.count - before).toBe(2);
      await vi.waitFor(() => expect(logged.filter((line) => line.msg === 'request')).toHaveLength(4));
      const requests = logged
        .filter((line) => line.msg === 'request')
        .map(({ method, path, status, cache, ms }) => ({ method, path, status, cache, ms: typeof ms }));
      expect(requests).toEqual([
        { method: 'GET', path: '/groups/5', status: 200, cache: 'group-profile-proxy; fwd=miss; stored', ms: 'number' },
        {
          method: 'GET',
          path: '/groups/5',
          status: 200,
          cache: expect.stringMatching(/^group-profile-proxy; hit; ttl=\d+$/),
          ms: 'number',
        },
        { method: 'GET', path: '/groups/05', status: 400, cache: null, ms: 'number' },
        { method: 'GET', path: '/healthz', status: 200, cache: null, ms: 'number' },
      ]);
    } finally {
      await proxy.close();
    }
  });
});
