import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CoalescingCache } from '../src/index.js';
import { WaitList } from '../src/engine/wait-list.js';
import { ManualClock, SYSTEM_CLOCK } from '../src/util/clock.js';
import { deferred } from './helpers/deferred.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Settlement of a promise, readable synchronously. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: { code?: string } } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: { code?: string }) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

describe('WaitList', () => {
  it('times each caller out on its own deadline, under one timer', async () => {
    const clock = new ManualClock();
    const list = new WaitList<string>(60, clock);
    const early = track(list.wait(true, undefined));
    clock.advance(35);
    const late = track(list.wait(false, undefined));
    expect(clock.pending).toBe(1);
    clock.advance(25); // the early caller's deadline
    await sleep(0);
    expect(early.error?.code).toBe('WAIT_TIMEOUT');
    expect(late.settled).toBe(false);
    clock.advance(34);
    await sleep(0);
    expect(late.settled).toBe(false);
    clock.advance(1);
    await sleep(0);
    expect(late.error?.code).toBe('WAIT_TIMEOUT');
    expect(clock.pending).toBe(0);
  });

  it('gives the starter its own answer, every other caller the shared one, and skips callers that left', async () => {
    const list = new WaitList<string>(10_000, SYSTEM_CLOCK);
    const leaving = new AbortController();
    const starter = track(list.wait(true, undefined));
    const gone = track(list.wait(false, leaving.signal));
    const others = Array.from({ length: 3 }, () => track(list.wait(false, new AbortController().signal)));
    leaving.abort();
    await sleep(0);
    expect(gone.error?.code).toBe('ABORTED');
    expect(getEventListeners(leaving.signal, 'abort')).toHaveLength(0);
    list.resolveAll('miss', 'collapsed');
    await sleep(0);
    expect(starter.value).toBe('miss');
    expect(others.map((o) => o.value)).toEqual(['collapsed', 'collapsed', 'collapsed']);
    expect(gone.value).toBeUndefined();
  });

  it('rejects a caller whose signal is already aborted, and passes a load failure to all', async () => {
    const list = new WaitList<string>(10_000, SYSTEM_CLOCK);
    await expect(list.wait(false, AbortSignal.abort())).rejects.toMatchObject({ code: 'ABORTED', status: 499 });
    const waiting = [list.wait(true, undefined), list.wait(false, undefined)];
    const failure = new Error('origin down');
    list.rejectAll(failure);
    for (const result of await Promise.allSettled(waiting))
      expect(result).toEqual({ status: 'rejected', reason: failure });
  });
});

describe('a burst on the engine', () => {
  it('is one load; the thousand collapsed callers share one answer object', async () => {
    const gate = deferred<{ id: string }>();
    let loads = 0;
    const cache = new CoalescingCache<{ id: string }>({
      load: () => {
        loads++;
        return gate.promise;
      },
    });
    const lookups = Array.from({ length: 1000 }, () => cache.get('7'));
    gate.resolve({ id: '7' });
    const results = await Promise.all(lookups);
    expect(loads).toBe(1);
    expect(results[0]!.outcome).toBe('miss');
    expect(new Set(results.slice(1)).size).toBe(1);
    expect(results[1]).toMatchObject({ outcome: 'collapsed', entry: results[0]!.entry });
    await cache.close();
  });
});
