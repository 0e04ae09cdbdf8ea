import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockBackend } from '../src/mock-backend/server.js';
import { ManualClock } from '../src/util/clock.js';
import { sleep, startStack, type Stack } from './helpers/stack.js';
import { until } from './helpers/until.js';
import { spawnEntry } from './helpers/spawn.js';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

const ids = Array.from({ length: 20 }, (_, i) => String(100 + i));

async function warm(s: Stack): Promise<void> {
  for (const id of ids) expect((await s.get(`/groups/${id}`)).status).toBe(200);
}

describe('origin outage', () => {
  it('serves every cached id stale while the backend is down, and the breaker stops origin traffic', async () => {
    const clock = new ManualClock();
    stack = await startStack(
      { latencyMs: 5 },
      {
        ttlMs: 200,
        ttlJitter: 0,
        staleTtlMs: 0,
        negativeStaleTtlMs: 0,
        breakerVolumeThreshold: 10,
        breakerErrorPercent: 50,
        breakerResetMs: 60_000,
      },
      1000,
      { clock },
    );
    await warm(stack);
    const warmCalls = stack.stats().calls;
    clock.advance(250); // every entry is now past freshness
    await stack.setMode('error');
    const statuses: number[] = [];
    const details: string[] = [];
    for (let round = 0; round < 10; round++) {
      const responses = await Promise.all(ids.map((id) => stack!.get(`/groups/${id}`)));
      for (const r of responses) {
        statuses.push(r.status);
        details.push(r.headers['cache-status']!);
      }
    }
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(details.every((d) => /fwd=stale; fwd-status=50[23]; ttl=-\d+; detail=stale-if-error$/.test(d))).toBe(true);
    expect(stack.proxy.cache.guard.breakerState).toBe('open');
    const callsWhenOpen = stack.stats().calls;
    // Once open, 500 more requests reach no origin at all.
    const more = await Promise.all(Array.from({ length: 500 }, (_, i) => stack!.get(`/groups/${ids[i % ids.length]}`)));
    expect(more.every((r) => r.status === 200 && r.headers['cache-status']!.includes('fwd-status=503'))).toBe(true);
    expect(stack.stats().calls).toBe(callsWhenOpen);
    console.info(
      `outage: ${warmCalls} warm-up calls, ${callsWhenOpen - warmCalls} origin calls until the breaker opened, 0 during the next 500 requests`,
    );

    // An id never cached gets 503 with Retry-After at once.
    const cold = await stack.get('/groups/999');
    expect(cold.status).toBe(503);
    expect(cold.headers['retry-after']).toBe('60');
    expect(JSON.parse(cold.body).error.code).toBe('CIRCUIT_OPEN');
    expect(stack.stats().calls).toBe(callsWhenOpen);
  });

  it('closes the breaker when the backend is back and serves fresh data again', async () => {
    const clock = new ManualClock();
    stack = await startStack(
      { latencyMs: 5 },
      {
        ttlMs: 200,
        ttlJitter: 0,
        staleTtlMs: 0,
        negativeStaleTtlMs: 0,
        breakerVolumeThreshold: 5,
        breakerResetMs: 300,
      },
      1000,
      { clock },
    );
    await warm(stack);
    clock.advance(200);
    await stack.setMode('error');
    for (let i = 0; i < 3; i++) await Promise.all(ids.map((id) => stack!.get(`/groups/${id}`)));
    expect(stack.proxy.cache.guard.breakerState).toBe('open');
    await stack.setMode('normal');
    // opossum keeps its own reset timer: wait for the state it leads to, not for a fixed time.
    await until(() => stack!.proxy.cache.guard.breakerState === 'half-open');
    const probe = await stack.get(`/groups/${ids[0]}`);
    expect(probe.status).toBe(200);
    expect(probe.headers['cache-status']).toBe('group-profile-proxy; fwd=miss; stored');
    expect(stack.proxy.cache.guard.breakerState).toBe('closed');
    const after = await Promise.all(ids.map((id) => stack!.get(`/groups/${id}`)));
    expect(after.every((r) => r.status === 200 && !r.headers['cache-status']!.includes('stale'))).toBe(true);
  });
});

describe('slow and flapping origins', () => {
  it('answers a slow origin with the stale entry within the soft timeout, then refreshes the cache', async () => {
    const clock = new ManualClock();
    stack = await startStack(
      { latencyMs: 5 },
      { ttlMs: 200, ttlJitter: 0, staleTtlMs: 0, negativeStaleTtlMs: 0, softTimeoutMs: 100 },
      1000,
      { clock },
    );
    expect((await stack.get('/groups/7')).status).toBe(200);
    clock.advance(200);
    await stack.setMode('hang'); // the slow origin: no answer until released
    const requests = Promise.all(Array.from({ length: 50 }, () => stack!.get('/groups/7')));
    await until(() => stack!.proxy.cache.engine.stats().waiting === 50);
    clock.advance(100); // the soft timeout
    const slow = await requests;
    expect(slow.every((r) => r.status === 200 && r.headers['cache-status']!.endsWith('detail=stale-timeout'))).toBe(
      true,
    );
    expect(stack.stats().calls).toBe(2);
    // The slow load finishes in the background and refreshes the entry.
    await stack.setMode('normal');
    await until(() => stack!.proxy.cache.engine.stats().inFlight === 0);
    const fresh = await stack.get('/groups/7');
    expect(fresh.headers['cache-status']).toMatch(/; hit; ttl=\d+$/);
    expect(stack.stats().calls).toBe(2);
  });

  it('serves stale-while-revalidate with exactly one background refresh', async () => {
    const clock = new ManualClock();
    stack = await startStack({ latencyMs: 50 }, { ttlMs: 1000, ttlJitter: 0, staleTtlMs: 60_000 }, 1000, { clock });
    await stack.get('/groups/8');
    clock.advance(1000);
    const responses = await Promise.all(Array.from({ length: 300 }, () => stack!.get('/groups/8')));
    const statuses = responses.map((r) => r.headers['cache-status']!);
    // Nobody waits: requests before the refresh lands get the stale copy, later ones the new one.
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(statuses.every((s) => s.includes('detail=stale-while-revalidate') || /; hit; ttl=\d+$/.test(s))).toBe(true);
    expect(statuses.filter((s) => s.includes('detail=stale-while-revalidate')).length).toBeGreaterThan(0);
    await until(() => stack!.proxy.cache.engine.stats().inFlight === 0);
    expect(stack.stats().calls).toBe(2);
    expect((await stack.get('/groups/8')).headers['cache-status']).toMatch(/; hit; ttl=\d+$/);
  });

  it('never shows an error for a cached id while the backend flaps', async () => {
    const clock = new ManualClock();
    stack = await startStack(
      { latencyMs: 2 },
      { ttlMs: 50, ttlJitter: 0, staleTtlMs: 0, negativeStaleTtlMs: 0, breakerVolumeThreshold: 1_000_000 },
      1000,
      { clock },
    );
    await warm(stack);
    await stack.setMode('flapping');
    const statuses: number[] = [];
    for (let round = 0; round < 20; round++) {
      clock.advance(60);
      for (const r of await Promise.all(ids.map((id) => stack!.get(`/groups/${id}`)))) statuses.push(r.status);
    }
    expect(statuses).toHaveLength(400);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(stack.stats().calls).toBeGreaterThan(40); // the origin really was asked, and failed half the time
  });
});

describe('origin protection', () => {
  it('keeps origin concurrency at the bound and sheds excess distinct-id misses with 503', async () => {
    stack = await startStack(
      { latencyMs: 300 },
      { upstreamConcurrency: 'fixed', upstreamMaxConcurrency: 64, upstreamMaxQueue: 256, upstreamQueueTimeoutMs: 5000 },
      5000,
    );
    const heapBefore = process.memoryUsage().heapUsed;
    const responses = await Promise.all(Array.from({ length: 5000 }, (_, i) => stack!.get(`/groups/${10_000 + i}`)));
    const ok = responses.filter((r) => r.status === 200).length;
    const shed = responses.filter((r) => r.status === 503);
    expect(ok + shed.length).toBe(5000);
    expect(stack.stats().maxInFlight).toBeLessThanOrEqual(64);
    expect(ok).toBeGreaterThanOrEqual(64 + 256);
    expect(shed.length).toBeGreaterThan(0);
    for (const r of shed) {
      expect(JSON.parse(r.body).error.code).toBe('OVERLOADED');
      expect(r.headers['retry-after']).toBe('1');
    }
    expect(stack.stats().calls).toBe(ok);
    expect(stack.proxy.cache.engine.stats().inFlight).toBe(0);
    expect(stack.proxy.cache.guard.stats()).toMatchObject({ active: 0, queued: 0 });
    console.info(
      `shedding: ${ok} served, ${shed.length} shed, origin max concurrency ${stack.stats().maxInFlight}, heap delta ${Math.round((process.memoryUsage().heapUsed - heapBefore) / 1e6)} MB`,
    );
  });

  it('holds 1200 concurrent keep-alive connections without errors', async () => {
    stack = await startStack({ latencyMs: 0 });
    await stack.get('/groups/1');
    const pool = new Pool(stack.proxy.url, { connections: 1200 });
    try {
      const responses = await Promise.all(
        Array.from({ length: 1200 }, async () => {
          const response = await pool.request({ path: '/groups/1', method: 'GET' });
          await response.body.text();
          return response.statusCode;
        }),
      );
      expect(responses.every((s) => s === 200)).toBe(true);
    } finally {
      await pool.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('on SIGTERM fails readiness first, completes 1000 in-flight requests, and exits 0', async () => {
    // The origin answers after 3 s: the requests are still in flight through the 2 s readiness
    // delay and into the drain that follows. The delay is long enough for /readyz to be asked on a
    // busy machine (with 0.5 s, the listener had closed before the check connected); the upstream
    // deadline is raised above the origin's 3 s.
    const backend = await startMockBackend({ latencyMs: 3000, latencyJitterMs: 0 });
    const proxy = spawnEntry('src/cli.ts', {
      PORT: '0',
      HOST: '127.0.0.1',
      UPSTREAM_URL: backend.url,
      UPSTREAM_TIMEOUT_MS: '10000',
      SHUTDOWN_DELAY_MS: '2000',
      LOG_LEVEL: 'info',
    });
    try {
      const { url } = JSON.parse(await proxy.waitForLine(/listening/)) as { url: string };
      const client = new Pool(url, { connections: 1000 });
      const inFlight = Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const response = await client.request({ path: `/groups/${1 + (i % 50)}`, method: 'GET' });
          await response.body.text();
          return response.statusCode;
        }),
      );
      // Every request written to its own connection and all 50 ids at the origin (one batch by default): all truly in flight.
      const idsAtOrigin = () => Object.keys(backend.backend.stats().byId).length;
      while (client.stats.running < 1000 || idsAtOrigin() < 50) await sleep(5);
      proxy.child.kill('SIGTERM');
      // Readiness fails once the signal is handled (at once on an idle machine; a busy one takes longer).
      let ready = await fetch(`${url}/readyz`);
      for (let i = 0; i < 50 && ready.status === 200; i++) {
        await sleep(20);
        ready = await fetch(`${url}/readyz`);
      }
      expect(ready.status).toBe(503);
      const statuses = await inFlight;
      expect(
        statuses.filter((s) => s !== 200),
        JSON.stringify(statuses.slice(0, 5)),
      ).toHaveLength(0);
      expect(await proxy.exited).toBe(0);
      expect(Object.values(backend.backend.stats().byId)).toEqual(Array(50).fill(1));
      await client.destroy();
    } finally {
      proxy.child.kill('SIGKILL');
      await backend.close();
    }
  });
});
