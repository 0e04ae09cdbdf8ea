import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisTier, UNAVAILABLE } from '../src/shared-tier/redis/redis-tier.js';
import { uniquePrefix } from './helpers/fleet.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';

/**
 * onHealthChange is what the sidecar logs (warn when unreachable, info when reachable), so every
 * call here is one log line: the first known state must be reported, then each transition once.
 */
interface HealthCall {
  healthy: boolean;
  error: string | undefined;
}

let server: RedisServer | undefined;
let tier: RedisTier | undefined;
let client: Redis | undefined;
afterEach(async () => {
  await tier?.close();
  tier = undefined;
  client?.disconnect();
  client = undefined;
  await server?.stop();
  server = undefined;
});

function recorder(): { calls: HealthCall[]; onHealthChange: (healthy: boolean, error?: Error) => void } {
  const calls: HealthCall[] = [];
  return { calls, onHealthChange: (healthy, error) => void calls.push({ healthy, error: error?.message }) };
}

/** Polls a condition (bounded), never sleeps against a deadline. */
async function waitUntil(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A redis-server on a free port that is not running yet (started, then stopped). */
async function stoppedServer(extraArgs: string[] = []): Promise<RedisServer> {
  const s = await startRedisServer(extraArgs);
  await s.stop();
  return s;
}

/** A client the test can watch: every failed (re)connect attempt emits 'error', retried every 10 ms. */
function watchedClient(url: string): { client: Redis; errors: () => number } {
  let errors = 0;
  const c = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 10 });
  c.on('error', () => void errors++);
  return { client: c, errors: () => errors };
}

describe('L2 health reports (onHealthChange)', () => {
  it('reports an unreachable Redis at start once, however often reconnecting fails, and its recovery once', async () => {
    server = await stoppedServer();
    const health = recorder();
    const watched = watchedClient(server.url);
    client = watched.client;
    tier = new RedisTier({ client, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });

    await waitUntil(() => watched.errors() >= 5, '5 failed connection attempts');
    expect(health.calls).toEqual([{ healthy: false, error: expect.stringContaining('ECONNREFUSED') }]);

    await server.start();
    await waitUntil(() => health.calls.length >= 2, 'a second health report');
    expect(await tier.readEntryBytes('1')).toBeNull();
    expect(await tier.readEntryBytes('2')).toBeNull();
    expect(health.calls).toEqual([
      { healthy: false, error: expect.stringContaining('ECONNREFUSED') },
      { healthy: true, error: undefined },
    ]);
  });

  it('reports each transition of a flapping Redis exactly once', async () => {
    server = await stoppedServer();
    const health = recorder();
    const watched = watchedClient(server.url);
    client = watched.client;
    tier = new RedisTier({ client, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });
    const expected: boolean[] = [];
    for (let round = 0; round < 2; round++) {
      const errorsBefore = watched.errors();
      await waitUntil(() => watched.errors() >= errorsBefore + 3, '3 more failed connection attempts');
      expected.push(false);
      expect(health.calls.map((c) => c.healthy)).toEqual(expected);

      await server.start();
      await waitUntil(() => health.calls.length > expected.length, 'the recovery report');
      expect(await tier.readEntryBytes('1')).toBeNull();
      expected.push(true);
      expect(health.calls.map((c) => c.healthy)).toEqual(expected);
      await server.stop();
    }
  });

  it('reports an unreachable Redis at start through a tier that owns its connection (REDIS_URL), then its recovery', async () => {
    server = await stoppedServer();
    const health = recorder();
    tier = new RedisTier({ url: server.url, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });

    await waitUntil(() => health.calls.length >= 1, 'the first health report');
    expect(health.calls).toEqual([{ healthy: false, error: expect.stringContaining('ECONNREFUSED') }]);
    expect(await tier.readEntryBytes('1')).toBe(UNAVAILABLE);

    await server.start();
    await waitUntil(() => health.calls.length >= 2, 'a second health report');
    expect(await tier.readEntryBytes('1')).toBeNull();
    expect(health.calls).toEqual([
      { healthy: false, error: expect.stringContaining('ECONNREFUSED') },
      { healthy: true, error: undefined },
    ]);
  });

  it('reports an unreachable Redis Cluster at start once, and its recovery once', async () => {
    // The helper gives each server its own --dir, where a relative cluster config file lands. A lone
    // node never learns its own address from a peer: announce it, or CLUSTER SLOTS names no host.
    server = await stoppedServer([
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      'nodes.conf',
      '--cluster-announce-ip',
      '127.0.0.1',
    ]);
    const health = recorder();
    tier = new RedisTier({
      clusterNodes: [`127.0.0.1:${server.port}`],
      prefix: uniquePrefix(),
      onHealthChange: health.onHealthChange,
    });

    await waitUntil(() => health.calls.length >= 1, 'the first health report');
    expect(health.calls).toEqual([{ healthy: false, error: expect.any(String) }]);

    await server.start();
    // A one-node cluster owning every slot.
    expect(server.cli('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')).toContain('OK');
    // Redis holds a restarted cluster node in cluster_state:fail for 2 s (CLUSTER_WRITABLE_DELAY).
    await waitUntil(() => health.calls.length >= 2, 'a second health report', 10_000);
    expect(health.calls).toEqual([
      { healthy: false, error: expect.any(String) },
      { healthy: true, error: undefined },
    ]);
  });

  it('reports a reachable Redis at start once as reachable, never as unreachable', async () => {
    server = await startRedisServer();
    const health = recorder();
    tier = new RedisTier({ url: server.url, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });
    await waitUntil(() => health.calls.length >= 1, 'the first health report');
    expect(await tier.readEntryBytes('1')).toBeNull();
    expect(health.calls).toEqual([{ healthy: true, error: undefined }]);
  });

  it('reports a client that is already connected as reachable once', async () => {
    server = await startRedisServer();
    const health = recorder();
    client = new Redis(server.url, { maxRetriesPerRequest: 0 });
    await new Promise((resolve) => client!.once('ready', resolve));
    tier = new RedisTier({ client, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });
    await waitUntil(() => health.calls.length >= 1, 'the first health report');
    expect(await tier.readEntryBytes('1')).toBeNull();
    expect(health.calls).toEqual([{ healthy: true, error: undefined }]);
  });

  it('reports nothing once closed: a shutdown is not an outage', async () => {
    server = await startRedisServer();
    const health = recorder();
    client = new Redis(server.url, { maxRetriesPerRequest: 0 });
    tier = new RedisTier({ client, prefix: uniquePrefix(), onHealthChange: health.onHealthChange });
    await waitUntil(() => health.calls.length >= 1, 'the first health report');
    expect(health.calls).toEqual([{ healthy: true, error: undefined }]);

    // The tier never closes a client it was given; what happens to it after close is not the tier's to report.
    await tier.close();
    const ended = new Promise((resolve) => client!.once('end', resolve));
    client.disconnect();
    await ended;
    expect(health.calls).toEqual([{ healthy: true, error: undefined }]);
  });
});
