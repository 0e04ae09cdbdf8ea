import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startMockBackend, type RunningMockBackend } from '../src/mock-backend/server.js';
import { uniquePrefix } from './helpers/fleet.js';
import { until } from './helpers/until.js';
import { spawnEntry, type Spawned } from './helpers/spawn.js';

interface ProxyProcess {
  process: Spawned;
  url: string;
  client: Pool;
}

let backend: RunningMockBackend;
let proxies: ProxyProcess[] = [];

async function startProxy(prefix: string): Promise<ProxyProcess> {
  const spawned = spawnEntry('src/cli.ts', {
    PORT: '0',
    HOST: '127.0.0.1',
    UPSTREAM_URL: backend.url,
    REDIS_URL: inject('redisUrl'),
    REDIS_PREFIX: prefix,
    // Four proxies, a backend and 1000 clients share 2 cores here: allow slow Redis replies.
    REDIS_COMMAND_TIMEOUT_MS: '2000',
    LEASE_TTL_MS: '1000',
    LOG_LEVEL: 'info',
  });
  const { url } = JSON.parse(await spawned.waitForLine(/listening/)) as { url: string };
  await spawned.waitForLine(/L2 Redis reachable/);
  return { process: spawned, url, client: new Pool(url, { connections: 250 }) };
}

async function get(proxy: ProxyProcess, path: string): Promise<{ status: number; body: string }> {
  const response = await proxy.client.request({ path, method: 'GET' });
  return { status: response.statusCode, body: await response.body.text() };
}

beforeAll(async () => {
  backend = await startMockBackend({ latencyMs: 300, latencyJitterMs: 0 });
  const prefix = uniquePrefix();
  proxies = await Promise.all([0, 1, 2, 3].map(() => startProxy(prefix)));
}, 60_000);

afterAll(async () => {
  for (const proxy of proxies) {
    proxy.process.child.kill('SIGKILL');
    await proxy.client.destroy();
  }
  await backend?.close();
});

describe('four proxy processes sharing one Redis', () => {
  it('turn 1000 concurrent requests for one cold id, spread over all four, into exactly 1 origin call', async () => {
    const responses = await Promise.all(Array.from({ length: 1000 }, (_, i) => get(proxies[i % 4]!, '/groups/4242')));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(new Set(responses.map((r) => r.body)).size).toBe(1);
    expect(backend.backend.stats().byId['4242']).toBe(1);
  });

  it('complete a load whose lease holder was killed mid-load, with no failed request', async () => {
    const [holder, ...others] = proxies;
    backend.backend.setMode('hang');
    const doomed = get(holder!, '/groups/555').catch(() => undefined);
    await until(() => backend.backend.stats().byId['555'] === 1, 'the backend call for 555', 10_000);
    holder!.process.child.kill('SIGKILL');
    await holder!.process.exited;
    backend.backend.setMode('normal');
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => get(others[i % 3]!, '/groups/555')));
    await doomed;
    expect(responses.map((r) => r.status)).toEqual(Array(300).fill(200));
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ id: 555 });
    // The dead holder's call, then exactly one takeover for the whole fleet.
    expect(backend.backend.stats().byId['555']).toBe(2);
  });
});
