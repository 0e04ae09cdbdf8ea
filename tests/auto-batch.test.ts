import { describe, expect, it } from 'vitest';
import { NOT_FOUND, ProxyError } from '../src/index.js';
import { AutoBatchLoader } from '../src/origin/auto-batch.js';
import type { BatchResult } from '../src/origin/batch-loader.js';
import { meansNoBatchRoute, UpstreamStatusError } from '../src/origin/http-origin.js';
import { ManualClock } from '../src/util/clock.js';

type Answer = 'batch' | 'no-route' | 'not-a-batch-answer' | 'failing';

/** An upstream whose batch route answers as `answer` says; every call is recorded. */
function upstream(clock: ManualClock) {
  const calls: string[] = [];
  let answer: Answer = 'batch';
  const loader = new AutoBatchLoader<string>({
    loadOne: async (key) => {
      calls.push(`one:${key}`);
      return key === '404' ? NOT_FOUND : `profile ${key}`;
    },
    loadMany: async (keys) => {
      calls.push(`many:${keys.join(',')}`);
      if (answer === 'no-route') throw new UpstreamStatusError(404, 'upstream has no batch endpoint');
      if (answer === 'failing') throw new UpstreamStatusError(503, 'upstream answered 503');
      const results: BatchResult<string> = new Map();
      if (answer === 'batch') for (const key of keys) results.set(key, `profile ${key}`);
      else results.set('name', 'a single profile where a batch was due');
      return results;
    },
    meansNoBatchRoute,
    windowMs: 2,
    maxKeys: 100,
    retryMs: 60_000,
    clock,
  });
  const signal = new AbortController().signal;
  /** Loads `keys` together, as misses arriving in one batch window. */
  const loadAll = async (keys: string[]) => {
    const loads = keys.map((key) => loader.load(key, { signal }).catch((error: unknown) => error));
    clock.advance(2);
    return Promise.all(loads);
  };
  return { loader, calls, loadAll, set: (next: Answer) => (answer = next) };
}

describe('AutoBatchLoader (UPSTREAM_BATCH=auto)', () => {
  it('batches while the upstream serves the batch route', async () => {
    const u = upstream(new ManualClock());
    expect(u.loader.batching).toBeUndefined();
    expect(await u.loadAll(['1', '2', '3'])).toEqual(['profile 1', 'profile 2', 'profile 3']);
    expect(u.calls).toEqual(['many:1,2,3']);
    expect(u.loader.batching).toBe(true);
  });

  it('on a 404 for the batch route loads the same keys one by one at once, then goes singly until retryMs, then probes again', async () => {
    const clock = new ManualClock();
    const u = upstream(clock);
    u.set('no-route');
    expect(await u.loadAll(['1', '404'])).toEqual(['profile 1', NOT_FOUND]);
    expect(u.calls).toEqual(['many:1,404', 'one:1', 'one:404']);
    expect(u.loader.batching).toBe(false);
    u.calls.length = 0;
    clock.advance(59_000);
    expect(await u.loadAll(['5', '6'])).toEqual(['profile 5', 'profile 6']);
    expect(u.calls).toEqual(['one:5', 'one:6']);
    u.calls.length = 0;
    u.set('batch'); // the upstream gained the route
    clock.advance(1_000);
    expect(await u.loadAll(['7', '8'])).toEqual(['profile 7', 'profile 8']);
    expect(u.calls).toEqual(['many:7,8']);
    expect(u.loader.batching).toBe(true);
  });

  it('takes an answer that names none of the keys (a server answering /groups with something else) as no batch route', async () => {
    const u = upstream(new ManualClock());
    u.set('not-a-batch-answer');
    expect(await u.loadAll(['1', '2'])).toEqual(['profile 1', 'profile 2']);
    expect(u.calls).toEqual(['many:1,2', 'one:1', 'one:2']);
    expect(u.loader.batching).toBe(false);
  });

  it('takes a failing upstream (5xx) as a failure of these keys, not as a verdict on the route', async () => {
    const u = upstream(new ManualClock());
    u.set('failing');
    const results = await u.loadAll(['1', '2']);
    expect(results.map((r) => (r as ProxyError).code)).toEqual(['UPSTREAM_STATUS', 'UPSTREAM_STATUS']);
    expect(u.calls).toEqual(['many:1,2']);
    expect(u.loader.batching).toBeUndefined();
    u.set('batch');
    expect(await u.loadAll(['3'])).toEqual(['profile 3']);
    expect(u.calls).toEqual(['many:1,2', 'many:3']);
  });

  it('knows which failures mean no batch route', () => {
    for (const status of [400, 404, 405, 501])
      expect(meansNoBatchRoute(new UpstreamStatusError(status, 'x'))).toBe(true);
    for (const status of [429, 500, 502, 503])
      expect(meansNoBatchRoute(new UpstreamStatusError(status, 'x'))).toBe(false);
    expect(meansNoBatchRoute(new ProxyError('UPSTREAM_BAD_RESPONSE', 'not JSON'))).toBe(true);
    expect(meansNoBatchRoute(new ProxyError('UPSTREAM_TIMEOUT', 'slow'))).toBe(false);
    expect(meansNoBatchRoute(new Error('other'))).toBe(false);
  });
});
