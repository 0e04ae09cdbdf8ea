import { inspect } from 'node:util';
import { Hono } from 'hono';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { CoalescingCache, OptionError, adminRoutes, createProxyApp, type Loader } from '../src/index.js';
import { startFleet, type Fleet } from './helpers/fleet.js';
import { startRedisServer } from './helpers/redis-server.js';

const TOKEN = 'test-admin-token-0123456789';

function localApp(adminToken: string | null = TOKEN) {
  const calls: string[] = [];
  const load: Loader<{ id: string }> = async (key) => {
    calls.push(key);
    return { id: key };
  };
  const engine = new CoalescingCache({ load });
  return { app: createProxyApp({ engine, adminToken: adminToken ?? undefined }), engine, calls };
}

const invalidate = (body: unknown, authorization: string | null = `Bearer ${TOKEN}`) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

describe('POST /admin/invalidate', () => {
  it('does not exist when ADMIN_TOKEN is unset', async () => {
    const { app } = localApp(null);
    expect((await app.request('/admin/invalidate', invalidate({ ids: [1] }))).status).toBe(404);
  });

  it.each([
    ['no Authorization header', null],
    ['a wrong token', 'Bearer wrong-token-0123456789'],
    ['a token prefix', `Bearer ${TOKEN.slice(0, -1)}`],
    ['Basic auth', `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`],
    ['an empty bearer', 'Bearer '],
  ])('answers 401 for %s and touches nothing', async (_name, authorization) => {
    const { app, engine } = localApp();
    await engine.get('1');
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1] }, authorization));
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect(engine.peek('1')).toBeDefined();
  });

  it.each([
    ['a lower-case scheme', `bearer ${TOKEN}`],
    ['an upper-case scheme', `BEARER ${TOKEN}`],
    ['several spaces after the scheme', `Bearer   ${TOKEN}`],
  ])('accepts %s (the auth scheme is case-insensitive, RFC 9110 11.1)', async (_name, authorization) => {
    const { app, engine } = localApp();
    await engine.get('1');
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1] }, authorization));
    expect(response.status).toBe(200);
    expect(engine.peek('1')).toBeUndefined();
  });

  it.each([
    ['the scheme alone', 'Bearer'],
    ['the scheme glued to the token', `Bearer${TOKEN}`],
    ['the token followed by more', `Bearer ${TOKEN} extra`],
    ['the token alone', TOKEN],
    ['another scheme ending in bearer', `XBearer ${TOKEN}`],
  ])('answers 401 for %s', async (_name, authorization) => {
    const { app } = localApp();
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1] }, authorization));
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('invalidates the listed ids with the right token', async () => {
    const { app, engine, calls } = localApp();
    await engine.get('1');
    await engine.get('2');
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1, '2', 1] }));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ invalidated: ['1', '2'], positions: [] }); // no shared tier: no feed
    expect(engine.peek('1')).toBeUndefined();
    expect(engine.peek('2')).toBeUndefined();
    await engine.get('1');
    expect(calls).toEqual(['1', '2', '1']);
  });

  it.each([
    ['a malformed id', { ids: ['042'] }, 400, 'INVALID_GROUP_ID'],
    ['a non-id value', { ids: [{ id: 1 }] }, 400, 'INVALID_GROUP_ID'],
    ['an empty list', { ids: [] }, 400, 'BAD_REQUEST'],
    ['no ids field', { id: 1 }, 400, 'BAD_REQUEST'],
    ['too many ids', { ids: Array.from({ length: 1001 }, (_, i) => i + 1) }, 400, 'BAD_REQUEST'],
    ['a body that is not JSON', '{ids:', 400, 'BAD_REQUEST'],
    ['a body over 64 KiB', { ids: [1], pad: 'x'.repeat(70_000) }, 413, 'PAYLOAD_TOO_LARGE'],
  ])('rejects %s', async (_name, body, status, code) => {
    const { app, engine } = localApp();
    await engine.get('42');
    const response = await app.request('/admin/invalidate', invalidate(body));
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(code);
    expect(engine.peek('42')).toBeDefined();
  });

  it('answers 405 for other methods', async () => {
    const { app } = localApp();
    const response = await app.request('/admin/invalidate', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });

  it('evicts every instance of the fleet through the bus', async () => {
    fleet = await startFleet(3, { url: inject('redisUrl') }, { backend: { latencyMs: 0 } });
    const apps = fleet.instances.map(({ engine }) => createProxyApp({ engine, adminToken: TOKEN }));
    for (const app of apps) expect((await app.request('/groups/31')).status).toBe(200);
    fleet.backend.backend.touch(31);
    expect((await apps[0]!.request('/admin/invalidate', invalidate({ ids: [31] }))).status).toBe(200);
    for (const { engine } of fleet.instances) {
      const deadline = Date.now() + 5000;
      while (engine.peek('31') !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    }
    for (const app of apps)
      expect(((await (await app.request('/groups/31')).json()) as { revision: number }).revision).toBe(1);
  });

  it('answers 503 L2_UNAVAILABLE when Redis is down (only this instance was invalidated)', async () => {
    const redis = await startRedisServer();
    await redis.stop();
    fleet = await startFleet(0, { url: redis.url }, { backend: { latencyMs: 0 } });
    const { engine } = fleet.add();
    const app = createProxyApp({ engine, adminToken: TOKEN });
    await app.request('/groups/1');
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1] }));
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('1');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('L2_UNAVAILABLE');
    expect(engine.peek('1')).toBeUndefined();
  });
});

describe('the admin token option', () => {
  const engine = new CoalescingCache({ load: async () => ({}) });
  const mountDirectly = (token: unknown) => {
    const app = new Hono();
    app.route('/admin', adminRoutes({ engine, token: token as string, parseId: (raw) => raw, cacheName: 'test' }));
    return app;
  };
  // Each bad value with how the error describes it: its type and length, never the value.
  const invalid: [string, unknown, string][] = [
    ['an empty string', '', 'a string of 0 characters'],
    ['15 characters', 'x'.repeat(15), 'a string of 15 characters'],
    ['a space', 'sixteen-chars-an d', 'a string of 18 characters, not all printable ASCII'],
    ['a tab', 'sixteen-chars-an\td', 'a string of 18 characters, not all printable ASCII'],
    ['a newline', 'sixteen-chars-and\n', 'a string of 18 characters, not all printable ASCII'],
    ['DEL', 'sixteen-chars-and\x7f', 'a string of 18 characters, not all printable ASCII'],
    ['non-ASCII letters', 'é'.repeat(20), 'a string of 20 characters, not all printable ASCII'],
    ['a number', 1234567890123456, 'a number'],
    ['null', null, 'null'],
    ['an object', { token: TOKEN }, 'an object'],
  ];

  it.each(invalid)(
    'createProxyApp rejects %s, naming adminToken and never echoing the value',
    (_name, value, described) => {
      let error: unknown;
      try {
        createProxyApp({ engine, adminToken: value as string });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(OptionError);
      const optionError = error as OptionError;
      expect(optionError.code).toBe('ERR_INVALID_OPTION');
      expect(optionError.option).toBe('adminToken');
      expect(optionError.message).toBe(
        `invalid option adminToken: expected at least 16 printable ASCII characters (0x21-0x7e, no spaces), received ${described}`,
      );
      if (typeof value === 'string' && value !== '') {
        for (const shown of [
          optionError.message,
          inspect(optionError),
          JSON.stringify(optionError),
          String(optionError.received),
        ]) {
          expect(shown).not.toContain(value);
        }
      }
      if (typeof value === 'object' && value !== null) expect(inspect(optionError)).not.toContain(TOKEN);
    },
  );

  it.each(invalid)('adminRoutes rejects %s, naming token', (_name, value, described) => {
    expect(() => mountDirectly(value)).toThrow(OptionError);
    expect(() => mountDirectly(value)).toThrow(
      `invalid option token: expected at least 16 printable ASCII characters (0x21-0x7e, no spaces), received ${described}`,
    );
  });

  it('adminRoutes rejects a missing token', () => {
    expect(() => mountDirectly(undefined)).toThrow(
      'invalid option token: expected at least 16 printable ASCII characters (0x21-0x7e, no spaces), received undefined',
    );
  });

  it('the issue: an empty adminToken no longer serves invalidations without Authorization', () => {
    expect(() => createProxyApp({ engine, adminToken: '' })).toThrow(OptionError);
  });

  it('accepts exactly 16 printable ASCII characters, symbols included, through both entry points', async () => {
    const token = '!"#$%&()*+,-./~A';
    expect(token).toHaveLength(16);
    const request = {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"ids":["1"]}',
    };
    const viaApp = createProxyApp({ engine, adminToken: token });
    expect((await viaApp.request('/admin/invalidate', request)).status).toBe(200);
    expect((await mountDirectly(token).request('/admin/invalidate', request)).status).toBe(200);
  });
});

describe('GET /readyz', () => {
  it('reports ready with L2 disabled for an L1-only engine', async () => {
    const { app } = localApp();
    const response = await app.request('/readyz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ready', l2: 'disabled' });
  });

  it('reports L2 and the feed ok, and degraded and unavailable (not lagging: that is for a Redis that answers; still 200) while Redis is down', async () => {
    const redis = await startRedisServer();
    try {
      fleet = await startFleet(
        1,
        { url: redis.url },
        // A lag bound no test run reaches: the states asked for here follow from Redis alone.
        { backend: { latencyMs: 0 }, tier: { feedBlockMs: 20 }, engine: { feedMaxLagMs: 600_000 } },
      );
      const app = createProxyApp({ engine: fleet.instances[0]!.engine });
      expect(await (await app.request('/readyz')).json()).toEqual({
        status: 'ready',
        l2: 'ok',
        feed: { state: 'ok', lagMs: expect.any(Number), lagEntries: 0 },
      });
      await redis.stop();
      const deadline = Date.now() + 5000;
      const stats = () => fleet!.instances[0]!.engine.stats();
      while (stats().l2 === 'ok' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const degraded = await app.request('/readyz');
      expect(degraded.status).toBe(200);
      const body = (await degraded.json()) as { feed: { lagMs: number } };
      expect(body).toEqual({
        status: 'ready',
        l2: 'degraded',
        feed: { state: 'unavailable', lagMs: expect.any(Number), lagEntries: 0 },
      });
    } finally {
      await redis.stop();
    }
  });

  it('answers 503 once shutdown began', async () => {
    const engine = new CoalescingCache({ load: async () => ({}) });
    const app = createProxyApp({ engine, isReady: () => false });
    expect((await app.request('/readyz')).status).toBe(503);
  });
});
