import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { InMemoryTier, InMemoryTierStore } from '../src/l2/in-memory-tier.js';
import { deferred } from './helpers/deferred.js';
import { until } from './helpers/until.js';
import { RedisTier } from '../src/l2/redis-tier.js';
import { UNAVAILABLE, type SharedTier, type TierEvent } from '../src/util/shared-tier.js';

/**
 * The one contract every SharedTier implementation is held to (after
 * bentocache's driver test suite): the same behaviours, run against Redis
 * standalone, a real 3-master Redis Cluster and the in-memory tier. Each test
 * gets two instances sharing one storage, as two proxies of a fleet.
 */
interface Pair {
  a: SharedTier;
  b: SharedTier;
}

type Maker = (options: { leaseTtlMs?: number }) => Promise<Pair>;

const opened: SharedTier[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((tier) => tier.close()));
});

async function redisPair(target: () => { url: string } | { clusterNodes: string[] }, options: { leaseTtlMs?: number }): Promise<Pair> {
  const prefix = `contract-${randomUUID().slice(0, 8)}:`; // every test on keys of its own
  const make = () => new RedisTier({ ...target(), prefix, commandTimeoutMs: 2000, ...options });
  const a = make();
  const b = make();
  opened.push(a, b);
  await until(() => a.healthy && b.healthy, 'both Redis clients ready', 10_000);
  await Promise.all([a.subscribed, b.subscribed]);
  return { a, b };
}

const implementations: [string, Maker][] = [
  ['in-memory', async (options) => {
    const store = new InMemoryTierStore();
    const a = new InMemoryTier({ store, ...options });
    const b = new InMemoryTier({ store, ...options });
    opened.push(a, b);
    return { a, b };
  }],
  ['Redis standalone', (options) => redisPair(() => ({ url: inject('redisUrl') }), options)],
  ['Redis Cluster (3 masters)', (options) => redisPair(() => ({ clusterNodes: inject('redisClusterNodes') }), options)],
];

describe.each(implementations)('SharedTier contract: %s', (_name, makePair) => {
  it('gives the lease of a key with no entry to the first caller; another sees it held, with the time it has left', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 5000 });
    expect(await a.lookupOrLease('1', 'token-a', 'read')).toEqual({ type: 'leased' });
    const held = await b.lookupOrLease('1', 'token-b', 'read');
    expect(held).toMatchObject({ type: 'held' });
    const { pttlMs } = held as { pttlMs: number };
    expect(pttlMs).toBeGreaterThan(0);
    expect(pttlMs).toBeLessThanOrEqual(5000);
    // The holder asking again does not get the lease twice.
    expect(await a.lookupOrLease('1', 'token-a2', 'read')).toMatchObject({ type: 'held' });
  });

  it('stores a fill under the lease, byte for byte, and ends the lease; every instance then reads it', async () => {
    const { a, b } = await makePair({});
    const bytes = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x7b, 0x22, 0xe6, 0x9d, 0xad]);
    await a.lookupOrLease('2', 'token-a', 'read');
    expect(await a.fillIfLeased('2', 'token-a', bytes, 60_000)).toBe(true);
    for (const tier of [a, b]) {
      const found = await tier.lookupOrLease('2', 'other', 'read');
      expect(found).toMatchObject({ type: 'hit' });
      expect(Buffer.compare((found as { bytes: Buffer }).bytes, bytes)).toBe(0);
    }
  });

  it('refuses a fill under a token that does not hold the lease (fenced), and stores nothing', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('3', 'token-a', 'read');
    expect(await b.fillIfLeased('3', 'token-b', Buffer.from('intruder'), 60_000)).toBe(false);
    expect(await b.fillIfLeased('4', 'token-b', Buffer.from('no lease at all'), 60_000)).toBe(false);
    expect(await b.lookupOrLease('3', 'token-b', 'read')).toMatchObject({ type: 'held' });
    expect(await b.lookupOrLease('4', 'token-b', 'read')).toEqual({ type: 'leased' });
  });

  it('fences a load that began before an invalidation: deleteKeys drops the entry and voids the lease', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('5', 'old', 'read');
    await a.fillIfLeased('5', 'old', Buffer.from('v1'), 60_000);
    await a.lookupOrLease('6', 'slow-loader', 'read');
    expect(await b.deleteKeys(['5', '6'])).toBe(true);
    expect(await a.fillIfLeased('6', 'slow-loader', Buffer.from('from before the change'), 60_000)).toBe(false);
    expect(await b.lookupOrLease('5', 'new', 'read')).toEqual({ type: 'leased' });
    expect(await b.lookupOrLease('6', 'new', 'read')).toEqual({ type: 'leased' });
  });

  it('in force mode takes the lease over an entry the caller found unusable, but never over a held lease', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('7', 'first', 'read');
    await a.fillIfLeased('7', 'first', Buffer.from('unusable here'), 60_000);
    expect(await b.lookupOrLease('7', 'rewriter', 'force')).toEqual({ type: 'leased' });
    expect(await a.lookupOrLease('7', 'third', 'force')).toMatchObject({ type: 'held' });
    expect(await b.fillIfLeased('7', 'rewriter', Buffer.from('rewritten'), 60_000)).toBe(true);
    expect(((await a.lookupOrLease('7', 'x', 'read')) as { bytes: Buffer }).bytes.toString()).toBe('rewritten');
  });

  it('releases a lease only for its own token', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('8', 'mine', 'read');
    await b.releaseLease('8', 'not-mine');
    expect(await b.lookupOrLease('8', 'b', 'read')).toMatchObject({ type: 'held' });
    await a.releaseLease('8', 'mine');
    expect(await b.lookupOrLease('8', 'b', 'read')).toEqual({ type: 'leased' });
  });

  it('lets a lease whose holder went silent expire, so another instance takes over, and fences the old holder', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 100 });
    await a.lookupOrLease('9', 'died', 'read');
    await until(async () => typeOf(await b.lookupOrLease('9', 'successor', 'read')) === 'leased', 'the lease to expire and pass to b', 10_000);
    expect(await a.fillIfLeased('9', 'died', Buffer.from('late'), 60_000)).toBe(false);
    expect(await b.fillIfLeased('9', 'successor', Buffer.from('fresh'), 60_000)).toBe(true);
  });

  it('keeps a lease alive while its holder extends it', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 400 });
    await a.lookupOrLease('10', 'holder', 'read');
    await until(async () => pttlOf(await b.lookupOrLease('10', 'b', 'read')) < 200, 'the lease to run half down', 10_000);
    await a.extendLease('10', 'holder');
    expect(pttlOf(await b.lookupOrLease('10', 'b', 'read'))).toBeGreaterThan(200);
    await b.extendLease('10', 'not-the-holder'); // no effect either way
    expect(await a.fillIfLeased('10', 'holder', Buffer.from('done'), 60_000)).toBe(true);
  });

  it('expires an entry after its expiry', async () => {
    const { a } = await makePair({});
    await a.lookupOrLease('11', 't', 'read');
    await a.fillIfLeased('11', 't', Buffer.from('short-lived'), 50);
    expect(typeOf(await a.lookupOrLease('11', 't2', 'read'))).toBe('hit');
    await until(async () => typeOf(await a.lookupOrLease('11', 't2', 'read')) === 'leased', 'the entry to expire', 10_000);
  });

  it('delivers events to every other instance, with the publisher, never back to the publisher', async () => {
    const { a, b } = await makePair({});
    const atA: TierEvent[] = [];
    const atB: TierEvent[] = [];
    a.onEvent((event) => atA.push(event));
    const unsubscribe = b.onEvent((event) => atB.push(event));
    const events: TierEvent[] = [
      { type: 'filled', id: '12' },
      { type: 'failed', id: '13', code: 'UPSTREAM_TIMEOUT', status: 504, message: 'slow' },
      { type: 'invalidate', ids: ['14', '15'], deleted: true },
    ];
    for (const event of events) expect(await a.publish(event)).toBe(true);
    await until(() => atB.length === 3, 'three events at b', 10_000);
    // Pub/sub keeps no order across Cluster nodes (PUBLISH may go to any of them): compared as a set.
    const byId = (x: TierEvent, y: TierEvent) => JSON.stringify(x).localeCompare(JSON.stringify(y));
    expect([...atB].sort(byId)).toEqual(events.map((event) => ({ ...event, from: a.instanceId })).sort(byId));
    unsubscribe();
    await a.publish({ type: 'filled', id: '16' });
    await b.publish({ type: 'filled', id: '17' });
    await until(() => atA.length === 1, 'b’s event at a', 10_000);
    expect(atA).toEqual([{ type: 'filled', id: '17', from: b.instanceId }]);
    expect(atB).toHaveLength(3);
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close();
    expect(a.healthy).toBe(false);
    expect(await a.lookupOrLease('18', 't', 'read')).toBe(UNAVAILABLE);
    expect(await a.fillIfLeased('18', 't', Buffer.from('x'), 1000)).toBe(UNAVAILABLE);
    expect(await a.deleteKeys(['18'])).toBe(false);
    expect(await a.publish({ type: 'filled', id: '18' })).toBe(false);
    await a.releaseLease('18', 't');
    await a.extendLease('18', 't');
  });
});

describe('the engine over the in-memory tier', () => {
  it('turns 1000 lookups spread over 4 engines sharing one store into 1 origin call, and fences an invalidation fleet-wide', async () => {
    const store = new InMemoryTierStore();
    const gate = deferred<void>();
    let calls = 0;
    const engines = Array.from({ length: 4 }, () => {
      const l2 = new InMemoryTier({ store });
      opened.push(l2);
      return new CoalescingCache<{ id: string; version: number }>({
        l2,
        load: async (key) => {
          calls++;
          await gate.promise;
          return { id: key, version: calls };
        },
      });
    });
    const lookups = Promise.all(Array.from({ length: 1000 }, (_, i) => engines[i % 4]!.get('42')));
    await until(() => engines.every((engine) => engine.stats().waiting + engine.stats().inFlight > 0) && calls === 1, 'every engine waiting on the one load', 10_000);
    gate.resolve();
    const answers = await lookups;
    expect(calls).toBe(1);
    expect(new Set(answers.map((a) => a.entry.body.toString())).size).toBe(1);
    await engines[0]!.invalidate('42');
    await until(() => engines.every((engine) => engine.peek('42') === undefined), 'the invalidation on every engine', 10_000);
    expect((await engines[3]!.get('42')).entry.value).toMatchObject({ version: 2 });
    await Promise.all(engines.map((engine) => engine.close()));
  });
});

function typeOf(found: unknown): string {
  return found === UNAVAILABLE ? 'unavailable' : (found as { type: string }).type;
}

function pttlOf(found: unknown): number {
  expect(found).toMatchObject({ type: 'held' });
  return (found as { pttlMs: number }).pttlMs;
}
