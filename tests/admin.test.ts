import { afterEach, describe, expect, inject, it } from 'vitest';
import { CoalescingCache, createProxyApp, type Loader } from '../src/index.js';
import { startFleet, type Fleet } from './helpers/fleet.js';
import { startRedisServer } from './helpers/redis-server.js';

const TOKEN = 'test-admin-token-0123456789';

function localApp(adminToken: string | null = TOKEN) {
  const calls: string[] = [];
  const load: Loader<{ id: string }> = async (key) => (calls.push(key), { id: key });
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

  it('invalidates the listed ids with the right token', async () => {
    const { app, engine, calls } = localApp();
    await engine.get('1');
    await engine.get('2');
    const response = await app.request('/admin/invalidate', invalidate({ ids: [1, '2', 1] }));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ invalidated: ['1', '2'] });
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
    for (const app of apps) expect(((await (await app.request('/groups/31')).json()) as { revision: number }).revision).toBe(1);
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

describe('GET /readyz', () => {
  it('reports ready with L2 disabled for an L1-only engine', async () => {
    const { app } = localApp();
    const response = await app.request('/readyz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ready', l2: 'disabled' });
  });

  it('reports L2 ok, and degraded (still 200) while Redis is down', async () => {
    const redis = await startRedisServer();
    try {
      fleet = await startFleet(1, { url: redis.url }, { backend: { latencyMs: 0 } });
      const app = createProxyApp({ engine: fleet.instances[0]!.engine });
      expect(await (await app.request('/readyz')).json()).toEqual({ status: 'ready', l2: 'ok' });
      await redis.stop();
      const deadline = Date.now() + 5000;
      while (fleet.instances[0]!.engine.stats().l2 === 'ok' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const degraded = await app.request('/readyz');
      expect(degraded.status).toBe(200);
      expect(await degraded.json()).toEqual({ status: 'ready', l2: 'degraded' });
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
