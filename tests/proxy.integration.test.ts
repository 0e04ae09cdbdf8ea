import { createServer, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startSidecar } from '../src/index.js';
import { ManualClock } from '../src/util/clock.js';
import { startStack, type Stack } from './helpers/stack.js';
import { until } from './helpers/until.js';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe('coalescing over real sockets', () => {
  it('turns 1000 concurrent requests for one cold id into exactly 1 backend call', async () => {
    stack = await startStack({ latencyMs: 300 });
    const responses = await Promise.all(Array.from({ length: 1000 }, () => stack!.get('/groups/42')));
    expect(stack.stats().calls).toBe(1);
    expect(stack.stats().byId).toEqual({ '42': 1 });
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(new Set(responses.map((r) => r.body)).size).toBe(1);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ id: 42 });
    const outcomes = responses.map((r) => r.headers['cache-status']!.replace(/ttl=\d+/, 'ttl'));
    expect(outcomes.filter((o) => o.endsWith('fwd=miss; stored'))).toHaveLength(1);
    expect(outcomes.filter((o) => o.endsWith('collapsed')).length).toBeGreaterThan(0);
  });

  it('turns 1000 concurrent requests over 100 ids into exactly 100 backend calls', async () => {
    stack = await startStack({ latencyMs: 200 });
    const responses = await Promise.all(Array.from({ length: 1000 }, (_, i) => stack!.get(`/groups/${(i % 100) + 1}`)));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const stats = stack.stats();
    expect(stats.calls).toBe(100);
    expect(Object.values(stats.byId).every((count) => count === 1)).toBe(true);
    for (const r of responses) expect(JSON.parse(r.body).id).toBeGreaterThan(0);
  });

  it('rejects malformed ids with 400 and no backend call, never a 5xx', async () => {
    stack = await startStack({ latencyMs: 0 });
    const paths = [
      '/groups/0',
      '/groups/-1',
      '/groups/+1',
      '/groups/01',
      '/groups/1e3',
      '/groups/1.0',
      '/groups/%31',
      '/groups/1%20',
      '/groups/%EF%BC%91',
      '/groups/9007199254740992',
      '/groups/0x1',
      '/groups/abc',
      '/groups/1;2',
      '/groups/1,2',
      "/groups/1'",
      '/groups/1%0A',
      '/groups/%00',
      '/groups/1+1',
      '/groups/1/',
      '/groups//1',
    ];
    const responses = await Promise.all(paths.map((p) => stack!.get(p)));
    responses.forEach((r, i) => {
      expect([400, 404], paths[i]).toContain(r.status);
      expect(JSON.parse(r.body).error.code, paths[i]).toMatch(/^(INVALID_GROUP_ID|ROUTE_NOT_FOUND)$/);
    });
    expect(stack.stats().calls).toBe(0);
  });
});

describe('hostile requests on a raw socket', () => {
  it.each([
    ['a non-ASCII id', 'GET /groups/\uFF14\uFF12 HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a hostile Host header', 'GET /groups/1 HTTP/1.1\r\nHost: evil.example.com:99999/../\r\n\r\n'],
    ['an absolute-form target', 'GET http://evil.example.com/groups/1 HTTP/1.1\r\nHost: evil.example.com\r\n\r\n'],
    ['a header with a huge value', `GET /groups/1 HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
  ])('answers %s without a 5xx and without leaving the configured upstream', async (_name, request) => {
    stack = await startStack({ latencyMs: 0 });
    const status = await rawStatus(stack.proxy.port, request);
    expect(status).toBeLessThan(500);
    // Only group 1 may ever be fetched, and only from the mock backend.
    expect(Object.keys(stack.stats().byId).every((id) => id === '1')).toBe(true);
  });
});

describe('HTTP/1.0 without a Host header', () => {
  it.each([
    ['/groups/1', 200],
    ['/healthz', 200],
    ['/readyz', 200],
    ['/groups/01', 400],
    ['/nope', 404],
  ])('answers %s as it would with a Host header (%i)', async (path, status) => {
    stack = await startStack({ latencyMs: 0 });
    expect(await rawStatus(stack.proxy.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)).toBe(status);
    expect(await rawStatus(stack.proxy.port, `GET ${path} HTTP/1.0\r\n\r\n`)).toBe(status);
  });
});

/** Sends bytes as they are and returns the status code of the answer. */
function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // Written, not ended: a half-closed socket counts as a client that went away.
    const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.from(request, 'utf8')));
    let received = '';
    socket.setEncoding('latin1');
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.on('data', (chunk: string) => {
      received += chunk;
      const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
      if (match) {
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`no HTTP answer: ${JSON.stringify(received.slice(0, 80))}`)));
  });
}

describe('upstream failures', () => {
  it.each([
    ['error', 502, 'UPSTREAM_STATUS'],
    ['garbage', 502, 'UPSTREAM_BAD_RESPONSE'],
    ['not-object', 502, 'UPSTREAM_BAD_RESPONSE'],
    ['oversized', 502, 'UPSTREAM_BAD_RESPONSE'],
    ['down', 502, 'UPSTREAM_UNREACHABLE'],
    ['slow', 504, 'UPSTREAM_TIMEOUT'],
  ])(
    'backend mode %s → %i %s to every waiter, nothing cached, then a retry reaches the backend',
    async (mode, status, code) => {
      // The breaker is kept out of the way here: this test is about how each failure maps to a status.
      const slow = mode === 'slow';
      stack = await startStack(
        { latencyMs: 0 },
        { upstreamTimeoutMs: slow ? 300 : 30_000, breakerVolumeThreshold: 100_000 },
      );
      let responses: Promise<Awaited<ReturnType<Stack['get']>>[]>;
      if (slow) {
        // The failure is the deadline itself, so requests arriving after it start a load of their own.
        await stack.setMode(mode, 2000);
        responses = Promise.all(Array.from({ length: 100 }, () => stack!.get('/groups/77')));
      } else {
        // Gate: the backend holds the one load until all 100 requests wait on it, then fails it.
        await stack.setMode('hang');
        responses = Promise.all(Array.from({ length: 100 }, () => stack!.get('/groups/77')));
        await until(() => stack!.proxy.cache.engine.stats().waiting === 100);
        await stack.setMode(mode);
      }
      const failed = await responses;
      for (const r of failed) {
        expect(r.status).toBe(status);
        expect(JSON.parse(r.body).error.code).toBe(code);
        expect(r.headers['cache-control']).toBe('no-store');
      }
      const failedCalls = stack.stats().calls;
      if (slow) expect(failedCalls).toBeGreaterThanOrEqual(1);
      else expect(failedCalls).toBe(1);
      expect(stack.proxy.cache.engine.stats()).toMatchObject({ l1Entries: 0, inFlight: 0 });

      await stack.setMode('normal');
      const retry = await stack.get('/groups/77');
      expect(retry.status).toBe(200);
      expect(stack.stats().calls).toBe(failedCalls + 1);
    },
  );
});

describe('HTTP caching over real sockets', () => {
  it('answers 304 for a matching If-None-Match without a backend call', async () => {
    stack = await startStack({ latencyMs: 0 });
    const first = await stack.get('/groups/5');
    const revalidated = await stack.get('/groups/5', { 'if-none-match': first.headers.etag! });
    expect(revalidated.status).toBe(304);
    expect(revalidated.body).toBe('');
    expect(stack.stats().calls).toBe(1);
  });

  it('caches a missing group negatively until its TTL expires', async () => {
    const clock = new ManualClock();
    stack = await startStack(
      { latencyMs: 0, missingIds: [404] },
      { negativeTtlMs: 300, negativeStaleTtlMs: 0, ttlJitter: 0 },
      1000,
      { clock },
    );
    for (let i = 0; i < 5; i++) expect((await stack.get('/groups/404')).status).toBe(404);
    expect(stack.stats().calls).toBe(1);
    clock.advance(299);
    expect((await stack.get('/groups/404')).status).toBe(404);
    expect(stack.stats().calls).toBe(1);
    clock.advance(1);
    expect((await stack.get('/groups/404')).status).toBe(404);
    expect(stack.stats().calls).toBe(2);
  });

  it('re-fetches once when a fresh entry expires', async () => {
    const clock = new ManualClock();
    stack = await startStack({ latencyMs: 0 }, { ttlMs: 300, staleTtlMs: 0, ttlJitter: 0 }, 1000, { clock });
    await stack.get('/groups/8');
    clock.advance(300);
    // Gate: the backend holds the refill until all 200 requests wait on it.
    await stack.setMode('hang');
    const responses = Promise.all(Array.from({ length: 200 }, () => stack!.get('/groups/8')));
    await until(() => stack!.proxy.cache.engine.stats().waiting === 200);
    await stack.setMode('normal');
    expect((await responses).every((r) => r.status === 200)).toBe(true);
    expect(stack.stats().calls).toBe(2);
  });
});

describe('upstream request hygiene', () => {
  it('never forwards client headers such as Authorization and Cookie', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 1, name: 'g' }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/api`;
    const proxy = await startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', upstreamUrl: url });
    try {
      const response = await fetch(`${proxy.url}/groups/1`, {
        headers: {
          authorization: 'Bearer secret',
          cookie: 'session=abc',
          'x-forwarded-for': '1.2.3.4',
          'x-user': 'alice',
        },
      });
      expect(response.status).toBe(200);
      // UPSTREAM_BATCH=auto: a batch call first, answered with no batch answer, then the single call.
      expect(seen).toHaveLength(2);
      for (const headers of seen) {
        const forwarded = Object.keys(headers).sort();
        expect(forwarded).not.toContain('authorization');
        expect(forwarded).not.toContain('cookie');
        expect(forwarded).not.toContain('x-user');
        expect(forwarded).not.toContain('x-forwarded-for');
      }
    } finally {
      await proxy.close();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });

  it('uses the path prefix of UPSTREAM_URL', async () => {
    const paths: string[] = [];
    const upstream = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":3}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const proxy = await startSidecar({
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      upstreamUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v2/`,
    });
    try {
      expect((await fetch(`${proxy.url}/groups/3`)).status).toBe(200);
      // UPSTREAM_BATCH=auto: this upstream answers the batch route with a single profile, so the id goes alone.
      expect(paths).toEqual(['/v2/groups?ids=3', '/v2/groups/3']);
    } finally {
      await proxy.close();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });
});
