import { afterEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../bench/lib/zipf.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** The proxy's defaults (the stack helper pins UPSTREAM_BATCH=off for the tests that count single calls). */
const DEFAULTS = { upstreamBatch: 'auto' } as const;

function statusCounts(statuses: number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

describe('admission against a healthy upstream, defaults (#25)', () => {
  for (const burst of [2000, 5000]) {
    it(`${burst} distinct cold ids at once: none shed, each loaded once`, async () => {
      stack = await startStack({ latencyMs: 50 }, DEFAULTS, 1000);
      const responses = await Promise.all(Array.from({ length: burst }, (_, i) => stack!.get(`/groups/${1000 + i}`)));
      expect(statusCounts(responses.map((r) => r.status))).toEqual({ 200: burst });
      for (const [i, r] of responses.entries()) expect(JSON.parse(r.body).id).toBe(1000 + i);
      const stats = stack.stats();
      expect(Object.keys(stats.byId)).toHaveLength(burst);
      expect(Object.values(stats.byId).every((n) => n === 1)).toBe(true);
      expect(stack.proxy.cache.guard.stats()).toMatchObject({ shed: 0, active: 0, queued: 0 });
      console.info(
        `${burst} distinct cold ids: ${stats.batchCalls} batch calls, ${stats.singleCalls} single calls, upstream peak in flight ${stats.maxInFlight}, limit now ${stack.proxy.cache.guard.limit}`,
      );
    });
  }

  it('5000 distinct cold ids at once against an upstream without the batch route (one call each): none shed', async () => {
    stack = await startStack({ latencyMs: 50 }, { upstreamBatch: 'off' }, 1000);
    const responses = await Promise.all(Array.from({ length: 5000 }, (_, i) => stack!.get(`/groups/${1000 + i}`)));
    expect(statusCounts(responses.map((r) => r.status))).toEqual({ 200: 5000 });
    const stats = stack.stats();
    expect(stats.singleCalls).toBe(5000);
    console.info(
      `5000 distinct cold ids, no batching: upstream peak in flight ${stats.maxInFlight}, limit now ${stack.proxy.cache.guard.limit}`,
    );
  });

  it('1000 multi-gets of 50 ids out of 2000 at once: every id answered, every group loaded once', async () => {
    stack = await startStack({ latencyMs: 50 }, DEFAULTS, 1000);
    const random = seededRandom(7);
    const lists = Array.from({ length: 1000 }, () => {
      const ids = new Set<number>();
      while (ids.size < 50) ids.add(1 + Math.floor(random() * 2000));
      return [...ids];
    });
    const responses = await Promise.all(lists.map((ids) => stack!.get(`/groups?ids=${ids.join(',')}`)));
    expect(statusCounts(responses.map((r) => r.status))).toEqual({ 200: 1000 });
    for (const [i, r] of responses.entries()) {
      const body = JSON.parse(r.body) as Record<string, { id?: number; error?: unknown }>;
      for (const id of lists[i]!) expect(body[id]?.id, `id ${id} of multi-get ${i}`).toBe(id);
    }
    const asked = new Set(lists.flat());
    const stats = stack.stats();
    expect(Object.keys(stats.byId)).toHaveLength(asked.size);
    expect(Object.values(stats.byId).every((n) => n === 1)).toBe(true);
    expect(stack.proxy.cache.guard.stats().shed).toBe(0);
    console.info(`multi-get 1000 × 50 of 2000: ${asked.size} groups in ${stats.calls} upstream calls`);
  });
});

describe('admission against an upstream that can be overloaded (#25)', () => {
  it('capacity 10 at 100 ms, 3000 distinct cold ids one by one: only 200s and fast 503 OVERLOADED, the upstream held near its capacity, breaker closed', async () => {
    stack = await startStack({ latencyMs: 100, capacity: 10 }, { upstreamBatch: 'off' }, 1000);
    const responses = await Promise.all(Array.from({ length: 3000 }, (_, i) => stack!.get(`/groups/${1 + i}`)));
    const counts = statusCounts(responses.map((r) => r.status));
    expect(Object.keys(counts).sort()).toEqual(['200', '503']);
    for (const r of responses) {
      if (r.status === 503) expect(JSON.parse(r.body).error.code).toBe('OVERLOADED');
      else expect(JSON.parse(r.body).id).toBeGreaterThan(0);
    }
    const stats = stack.stats();
    // The fixed bound sent 64 at once; the adaptive limit starts at 20 and settles a little above 10 (about 20
    // at the peak on a quiet machine, 31 under two CPU burners, where stall accounting blurs the latencies).
    expect(stats.maxInFlight).toBeLessThan(64);
    expect(stack.proxy.cache.guard.breakerState).toBe('closed');
    console.info(
      `capacity 10: ${counts[200]} served, ${counts[503]} shed, upstream peak in flight ${stats.maxInFlight}, limit now ${stack.proxy.cache.guard.limit}`,
    );
  });
});
