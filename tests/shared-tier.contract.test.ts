import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { InMemoryTier, InMemoryTierStore } from '../src/shared-tier/memory/in-memory-tier.js';
import { deferred } from './helpers/deferred.js';
import { until } from './helpers/until.js';
import { RedisTier } from '../src/shared-tier/redis/redis-tier.js';
import {
  comparePositions,
  SHARED_TIER_DEFAULTS,
  UNAVAILABLE,
  type ChangeFeed,
  type EntryStore,
  type FeedChange,
  type FleetBitmaps,
  type FleetBuckets,
  type HotKeyRecord,
  type LeaseHint,
  type SharedTier,
  type TierEvent,
} from '../src/shared-tier/contract.js';
import type { Cluster, Redis } from 'ioredis';
import { killFeedConnections, rawRedis } from './helpers/feed.js';

/**
 * The one contract every SharedTier implementation is held to (after
 * bentocache's driver test suite): the same behaviours, run against Redis
 * standalone, a real 3-master Redis Cluster and the in-memory tier. Each test
 * gets two instances sharing one storage, as two proxies of a fleet.
 *
 * The tests are grouped by the small interface they hold an implementation to
 * (EntryStore, ChangeFeed, HotKeyRecord, FleetBitmaps, FleetBuckets: SharedTier
 * is their union), one `describe` each, and each group's pair is typed as that
 * interface (plus `close`, and what a test spanning two interfaces names), so an
 * implementation of one interface alone can be run against its group alone.
 */
interface Pair<T = SharedTier> {
  a: T;
  b: T;
  /** Cuts `tier`'s feed reader off once (its connections killed, or reading suspended for a moment); how many cuts were made. */
  disrupt(tier: T): Promise<number>;
  /** The feed's storage recreated empty, as a Redis restarted without persistence. */
  recreate(): Promise<void>;
  /** Appends `count` changes to shard 0 and trims them away before `reader` can read them. */
  appendAndTrimPast(reader: T, count: number): Promise<void>;
}

interface PairOptions {
  leaseTtlMs?: number;
  leaseWaitMs?: number;
  hotKeysMax?: number;
}

type Maker<T = SharedTier> = (options: PairOptions) => Promise<Pair<T>>;

const opened: SharedTier[] = [];
const rawClients: (Redis | Cluster)[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((tier) => tier.close()));
  for (const client of rawClients.splice(0)) client.disconnect();
});

async function redisPair(
  target: () => { url: string } | { clusterNodes: string[] },
  options: PairOptions,
): Promise<Pair> {
  const prefix = `contract-${randomUUID().slice(0, 8)}:`; // every test on keys of its own
  const make = () => new RedisTier({ ...target(), prefix, commandTimeoutMs: 2000, ...options });
  const a = make();
  const b = make();
  opened.push(a, b);
  await until(() => a.healthy && b.healthy, 'both Redis clients ready', 10_000);
  const raw = rawRedis(target());
  rawClients.push(raw);
  return {
    a,
    b,
    disrupt: async (tier) => {
      // Each cut lands on a live connection: wait for the reader to be back from the last one.
      let killed = 0;
      await until(
        async () => {
          killed = await killFeedConnections(raw, tier as RedisTier);
          return killed > 0;
        },
        'a feed connection to kill',
        10_000,
      );
      return killed;
    },
    recreate: async () => {
      for (const keys of a.feedKeys) await raw.del(keys.changes, keys.hints, keys.epoch);
    },
    appendAndTrimPast: async (reader, count) => {
      const stream = (reader as RedisTier).feedKeys[0]!.changes;
      // One transaction: the reader wakes only once the appended entries are trimmed away.
      const multi = raw.multi();
      for (let i = 0; i < count; i++)
        multi.xadd(stream, '*', 'kind', 'changed', 'ids', String(1000 + i * a.feedKeys.length), 'producer', 'test');
      multi.xtrim(stream, 'MAXLEN', 1);
      await multi.exec();
    },
  };
}

const implementations: [string, Maker][] = [
  [
    'in-memory',
    async (options) => {
      const store = new InMemoryTierStore();
      const a = new InMemoryTier({ store, ...options });
      const b = new InMemoryTier({ store, ...options });
      opened.push(a, b);
      return {
        a,
        b,
        disrupt: async (tier) => {
          (tier as InMemoryTier).suspendFeed();
          setImmediate(() => (tier as InMemoryTier).resumeFeed());
          return 1;
        },
        recreate: async () => store.restart(),
        appendAndTrimPast: async (reader, count) => {
          (reader as InMemoryTier).suspendFeed();
          for (let i = 0; i < count; i++) await a.appendChange({ ids: [String(1000 + i)], kind: 'changed' });
          store.trim(1);
          (reader as InMemoryTier).resumeFeed();
        },
      };
    },
  ],
  ['Redis standalone', (options) => redisPair(() => ({ url: inject('redisUrl') }), options)],
  ['Redis Cluster (3 masters)', (options) => redisPair(() => ({ clusterNodes: inject('redisClusterNodes') }), options)],
];

/** Subscribes and waits until the feed readers have their positions. */
async function listen(tier: ChangeFeed): Promise<TierEvent[]> {
  const events: TierEvent[] = [];
  tier.onEvent((event) => events.push(event));
  await (tier as RedisTier | InMemoryTier).whenFeedReady();
  return events;
}

function changesIn(events: TierEvent[]): FeedChange[] {
  return events.flatMap((event) => (event.type === 'change' ? [event.change] : []));
}

/** The first key (of 1 to 100) on `shard`. */
function keyOnShard(tier: ChangeFeed, shard: number): string {
  const key = Array.from({ length: 100 }, (_, i) => String(i + 1)).find((k) => tier.shardOf(k) === shard);
  if (key === undefined) throw new Error(`no key of 1 to 100 on shard ${shard}`);
  return key;
}

describe.each(implementations)('SharedTier contract: %s', (_name, makePair) => {
  describe('EntryStore', () => entryStoreContract(makePair));
  describe('ChangeFeed', () => changeFeedContract(makePair));
  describe('HotKeyRecord', () => hotKeyRecordContract(makePair));
  describe('FleetBitmaps', () => fleetBitmapsContract(makePair));
  describe('FleetBuckets', () => fleetBucketsContract(makePair));
});

/** EntryStore: entries and their leases. */
function entryStoreContract(makePair: Maker<EntryStore & Pick<ChangeFeed, 'appendChange'>>): void {
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
    expect(await a.fillIfLeased('2', 'token-a', bytes, 60_000)).toBe('stored');
    for (const tier of [a, b]) {
      const found = await tier.lookupOrLease('2', 'other', 'read');
      expect(found).toMatchObject({ type: 'hit' });
      expect(Buffer.compare((found as { bytes: Buffer }).bytes, bytes)).toBe(0);
    }
  });

  it('refuses a fill under a token that does not hold the lease (fenced), and stores nothing', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('3', 'token-a', 'read');
    expect(await b.fillIfLeased('3', 'token-b', Buffer.from('intruder'), 60_000)).toBe('fenced');
    expect(await b.fillIfLeased('4', 'token-b', Buffer.from('no lease at all'), 60_000)).toBe('fenced');
    expect(await b.lookupOrLease('3', 'token-b', 'read')).toMatchObject({ type: 'held' });
    expect(await b.lookupOrLease('4', 'token-b', 'read')).toEqual({ type: 'leased' });
  });

  it('fences a load that began before an invalidation: deleteKeys drops the entry and voids the lease', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('5', 'old', 'read');
    await a.fillIfLeased('5', 'old', Buffer.from('v1'), 60_000);
    await a.lookupOrLease('6', 'slow-loader', 'read');
    expect(await b.deleteKeys(['5', '6'])).toBe(true);
    expect(await a.fillIfLeased('6', 'slow-loader', Buffer.from('from before the change'), 60_000)).toBe('fenced');
    expect(await b.lookupOrLease('5', 'new', 'read')).toEqual({ type: 'leased' });
    expect(await b.lookupOrLease('6', 'new', 'read')).toEqual({ type: 'leased' });
  });

  it('in force mode takes the lease over an entry the caller found unusable, but never over a held lease', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('7', 'first', 'read');
    await a.fillIfLeased('7', 'first', Buffer.from('unusable here'), 60_000);
    expect(await b.lookupOrLease('7', 'rewriter', 'force')).toEqual({ type: 'leased' });
    expect(await a.lookupOrLease('7', 'third', 'force')).toMatchObject({ type: 'held' });
    expect(await b.fillIfLeased('7', 'rewriter', Buffer.from('rewritten'), 60_000)).toBe('awaited');
    expect(((await a.lookupOrLease('7', 'x', 'read')) as { bytes: Buffer }).bytes.toString()).toBe('rewritten');
  });

  it('tells the filler whether another lookup waited on its lease, so only then is a fill announced', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('40', 'alone', 'read');
    expect(await a.fillIfLeased('40', 'alone', Buffer.from('nobody waited'), 60_000)).toBe('stored');
    await a.lookupOrLease('41', 'holder', 'read');
    expect(await b.lookupOrLease('41', 'waiter', 'read')).toMatchObject({ type: 'held' });
    expect(await a.fillIfLeased('41', 'holder', Buffer.from('someone waited'), 60_000)).toBe('awaited');
    // The mark went with the lease: the next lease of the key starts unwaited.
    await b.deleteKeys(['41']);
    await a.lookupOrLease('41', 'next', 'read');
    expect(await a.fillIfLeased('41', 'next', Buffer.from('again'), 60_000)).toBe('stored');
  });

  it('releases a lease only for its own token', async () => {
    const { a, b } = await makePair({});
    await a.lookupOrLease('8', 'mine', 'read');
    expect(await b.releaseLease('8', 'not-mine')).toBe(false);
    expect(await b.lookupOrLease('8', 'b', 'read')).toMatchObject({ type: 'held' });
    expect(await a.releaseLease('8', 'mine')).toBe(true); // b waited on it
    expect(await b.lookupOrLease('8', 'b', 'read')).toEqual({ type: 'leased' });
  });

  it('lets a lease whose holder went silent expire, so another instance takes over, and fences the old holder', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 100 });
    await a.lookupOrLease('9', 'died', 'read');
    await until(
      async () => typeOf(await b.lookupOrLease('9', 'successor', 'read')) === 'leased',
      'the lease to expire and pass to b',
      10_000,
    );
    expect(await a.fillIfLeased('9', 'died', Buffer.from('late'), 60_000)).toBe('fenced');
    expect(await b.fillIfLeased('9', 'successor', Buffer.from('fresh'), 60_000)).toBe('stored');
  });

  it('keeps a lease alive while its holder extends it', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 400 });
    await a.lookupOrLease('10', 'holder', 'read');
    await until(
      async () => pttlOf(await b.lookupOrLease('10', 'b', 'read')) < 200,
      'the lease to run half down',
      10_000,
    );
    await a.extendLease('10', 'holder');
    expect(pttlOf(await b.lookupOrLease('10', 'b', 'read'))).toBeGreaterThan(200);
    await b.extendLease('10', 'not-the-holder'); // no effect either way
    expect(await a.fillIfLeased('10', 'holder', Buffer.from('done'), 60_000)).toBe('awaited');
  });

  it('expires an entry after its expiry', async () => {
    const { a } = await makePair({});
    await a.lookupOrLease('11', 't', 'read');
    await a.fillIfLeased('11', 't', Buffer.from('short-lived'), 50);
    expect(typeOf(await a.lookupOrLease('11', 't2', 'read'))).toBe('hit');
    await until(
      async () => typeOf(await a.lookupOrLease('11', 't2', 'read')) === 'leased',
      'the entry to expire',
      10_000,
    );
  });

  it('deletes a key once per change: appliers of the same (or an older) change after the first leave a refilled entry alone', async () => {
    // Spans ChangeFeed (`appendChange` gives the change's position); it is about `deleteKeys`.
    const { a, b } = await makePair({});
    const [change] = (await a.appendChange({ ids: ['30'], kind: 'changed' })) as FeedChange[];
    await a.lookupOrLease('30', 'old', 'read');
    await a.fillIfLeased('30', 'old', Buffer.from('before'), 60_000);
    expect(await a.deleteKeys(['30'], change!.position)).toBe(true);
    await b.lookupOrLease('30', 'new', 'read');
    expect(await b.fillIfLeased('30', 'new', Buffer.from('after'), 60_000)).toBe('stored');
    await b.deleteKeys(['30'], change!.position); // b applies the same change later
    expect(typeOf(await b.lookupOrLease('30', 'x', 'read'))).toBe('hit');
    const [later] = (await b.appendChange({ ids: ['30'], kind: 'changed' })) as FeedChange[];
    await a.deleteKeys(['30'], later!.position);
    expect(await a.lookupOrLease('30', 'y', 'read')).toEqual({ type: 'leased' });
  });

  it('reads stored entries of many keys at once, in the order asked, without taking a lease', async () => {
    const { a, b } = await makePair({});
    const keys = Array.from({ length: 150 }, (_, i) => String(200 + i));
    for (const key of keys.filter((_, i) => i % 3 === 0)) {
      await a.lookupOrLease(key, 't', 'read');
      await a.fillIfLeased(key, 't', Buffer.from(`entry ${key}`), 60_000);
    }
    const read = await b.readEntries(keys);
    expect(read).not.toBe(UNAVAILABLE);
    expect((read as (Buffer | undefined)[]).map((bytes) => bytes?.toString())).toEqual(
      keys.map((key, i) => (i % 3 === 0 ? `entry ${key}` : undefined)),
    );
    // No lease was taken on a key without an entry.
    expect(await a.lookupOrLease('201', 'u', 'read')).toEqual({ type: 'leased' });
  });

  it('names each instance apart and takes its lease timings from its options, the contract’s defaults otherwise', async () => {
    const { a, b } = await makePair({ leaseTtlMs: 1234, leaseWaitMs: 567 });
    expect(a.instanceId).toEqual(expect.any(String));
    expect(a.instanceId).not.toBe('');
    expect(a.instanceId).not.toBe(b.instanceId);
    expect([a.leaseTtlMs, a.leaseWaitMs]).toEqual([1234, 567]);
    expect(a.healthy && b.healthy).toBe(true);
    // The lease lasts what the option says.
    await a.lookupOrLease('19', 'holder', 'read');
    expect(pttlOf(await b.lookupOrLease('19', 'b', 'read'))).toBeLessThanOrEqual(1234);
    const defaults = await makePair({});
    expect([defaults.a.leaseTtlMs, defaults.a.leaseWaitMs]).toEqual([
      SHARED_TIER_DEFAULTS.leaseTtlMs,
      SHARED_TIER_DEFAULTS.leaseWaitMs,
    ]);
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close();
    expect(a.healthy).toBe(false);
    expect(await a.lookupOrLease('18', 't', 'read')).toBe(UNAVAILABLE);
    expect(await a.fillIfLeased('18', 't', Buffer.from('x'), 1000)).toBe(UNAVAILABLE);
    expect(await a.deleteKeys(['18'])).toBe(false);
    expect(await a.readEntries(['18'])).toBe(UNAVAILABLE);
    expect(await a.releaseLease('18', 't')).toBe(false);
    await a.extendLease('18', 't');
  });
}

/** ChangeFeed: the change feed and the lease hints beside it. */
function changeFeedContract(makePair: Maker<ChangeFeed & Pick<EntryStore, 'instanceId' | 'close'>>): void {
  it('delivers lease hints to every other instance, with the sender, never back to the sender', async () => {
    // Spans EntryStore: the sender is named by its `instanceId`.
    const { a, b } = await makePair({});
    const atA = await listen(a);
    const atB = await listen(b);
    const hints: LeaseHint[] = [
      { type: 'filled', id: '12' },
      { type: 'failed', id: '13', code: 'UPSTREAM_TIMEOUT', status: 504, message: 'slow' },
    ];
    for (const hint of hints) expect(await a.hint(hint)).toBe(true);
    await until(() => atB.length === 2, 'two hints at b', 10_000);
    // Hints of different ids may travel on different shards: compared as a set.
    const byJson = (x: unknown, y: unknown) => JSON.stringify(x).localeCompare(JSON.stringify(y));
    expect([...atB].sort(byJson)).toEqual(hints.map((hint) => ({ ...hint, from: a.instanceId })).sort(byJson));
    await b.hint({ type: 'filled', id: '17' });
    await until(() => atA.length === 1, 'b’s hint at a', 10_000);
    expect(atA).toEqual([{ type: 'filled', id: '17', from: b.instanceId }]);
  });

  it('delivers every appended change to every instance exactly once, in feed order per shard, the producer marked', async () => {
    // Spans EntryStore: the producer is named by its `instanceId`.
    const { a, b } = await makePair({});
    const atA = await listen(a);
    const atB = await listen(b);
    const appended: FeedChange[] = [];
    for (let i = 0; i < 30; i++) {
      const parts = await a.appendChange({
        ids: [String(100 + (i % 7)), String(200 + (i % 5))],
        kind: i % 10 === 9 ? 'deleted' : 'changed',
        version: `v${i}`,
      });
      expect(parts).not.toBe(UNAVAILABLE);
      appended.push(...(parts as FeedChange[]));
    }
    await until(() => changesIn(atB).length === appended.length, 'every change at b', 10_000);
    const received = changesIn(atB);
    expect(received.map(({ replayed, ...rest }) => rest)).toEqual(
      // The order across shards is not kept; within a shard it is the order of appending.
      expect.arrayContaining(appended.map(({ replayed, ...rest }) => rest)),
    );
    for (const shard of new Set(appended.map((change) => change.shard))) {
      const ours = received.filter((change) => change.shard === shard);
      expect(ours.map((change) => change.position)).toEqual(
        appended.filter((change) => change.shard === shard).map((change) => change.position),
      );
      for (let i = 1; i < ours.length; i++)
        expect(comparePositions(ours[i - 1]!.position, ours[i]!.position)).toBeLessThan(0);
    }
    expect(
      received.every((change) => change.producer === a.instanceId && Math.abs(change.appendedAt - Date.now()) < 60_000),
    ).toBe(true);
    // The producer hears its own changes too, in the same order: it learns their place in the feed.
    await until(() => changesIn(atA).length === appended.length, 'every change back at the producer', 10_000);
    const perShard = (changes: FeedChange[]) =>
      [...changes].sort((x, y) => x.shard - y.shard).map((change) => `${change.shard}/${change.position}`);
    expect(perShard(changesIn(atA))).toEqual(perShard(received)); // a stable sort keeps each shard's order
    expect(b.feedStatus().lagEntries).toBe(0);
  });

  it('carries whether the producer deleted the shared copies, so readers of a proxy-made change only evict their own', async () => {
    const { a, b } = await makePair({});
    const atB = await listen(b);
    await a.appendChange({ ids: ['31'], kind: 'changed', sharedCopiesDeleted: true });
    await a.appendChange({ ids: ['31'], kind: 'deleted' });
    await until(() => changesIn(atB).length === 2, 'both changes at b', 10_000);
    expect(changesIn(atB).map((change) => [change.kind, change.sharedCopiesDeleted === true])).toEqual([
      ['changed', true],
      ['deleted', false],
    ]);
  });

  it('resumes from its position after its reader was cut off, and misses nothing (20 cuts over 200 changes)', async () => {
    const pair = await makePair({});
    const { a, b } = pair;
    const atB = await listen(b);
    const positions: string[] = [];
    let cuts = 0;
    for (let i = 0; i < 200; i++) {
      if (i % 10 === 5) cuts += await pair.disrupt(b);
      const parts = (await a.appendChange({ ids: [String(3 * (i % 40) + 300)], kind: 'changed' })) as FeedChange[];
      positions.push(...parts.map((part) => `${part.shard}/${part.position}`));
    }
    await until(() => changesIn(atB).length >= positions.length, 'every change at b after the cuts', 20_000);
    const received = changesIn(atB).map((change) => `${change.shard}/${change.position}`);
    expect(received).toHaveLength(positions.length); // exactly once
    expect(new Set(received)).toEqual(new Set(positions));
    expect(atB.filter((event) => event.type === 'reset')).toEqual([]);
    // A cut can land while the reader is reconnecting from the one before; most land on a live connection.
    expect(cuts).toBeGreaterThanOrEqual(10);
    if (b instanceof RedisTier) expect(b.feedStatus().resumes).toBeGreaterThanOrEqual(1);
  });

  it('tells a reader to reset when the feed was recreated empty, and delivers what the new feed holds', async () => {
    const pair = await makePair({});
    const atB = await listen(pair.b);
    await pair.a.appendChange({ ids: ['40'], kind: 'changed' });
    await until(() => changesIn(atB).length === 1, 'the first change at b', 10_000);
    await pair.recreate();
    await pair.a.appendChange({ ids: ['41'], kind: 'changed' });
    await until(
      () => changesIn(atB).some((change) => change.ids.includes('41')),
      'the change on the new feed at b',
      10_000,
    );
    expect(
      atB.filter((event) => event.type === 'reset').map((event) => (event as { reason: string }).reason),
    ).toContain('epoch');
  });

  it('tells a reader to reset when the changes after its position were trimmed away before it read them', async () => {
    const pair = await makePair({});
    const atB = await listen(pair.b);
    await pair.appendAndTrimPast(pair.b, 5);
    await until(() => atB.some((event) => event.type === 'reset'), 'a reset at b', 10_000);
    expect(atB.find((event) => event.type === 'reset')).toMatchObject({ type: 'reset', reason: 'trimmed', shard: 0 });
    // Then what the feed still keeps (the last of the five) is applied again, after the reset.
    await until(() => changesIn(atB).length >= 1, 'the kept change at b', 10_000);
    const resetAt = atB.findIndex((event) => event.type === 'reset');
    expect(atB.slice(resetAt + 1).some((event) => event.type === 'change')).toBe(true);
    // Reading goes on from the end of the trimmed feed.
    await pair.a.appendChange({ ids: ['42'], kind: 'changed' });
    await until(() => changesIn(atB).some((change) => change.ids.includes('42')), 'a later change at b', 10_000);
  });

  it('refuses a malformed change before appending it, naming what is wrong', async () => {
    const { a } = await makePair({});
    await expect(a.appendChange({ ids: [], kind: 'changed' })).rejects.toThrow(/1 to 1000 ids/);
    await expect(a.appendChange({ ids: ['042'], kind: 'changed' })).rejects.toThrow(/invalid id/);
    await expect(a.appendChange({ ids: ['1'], kind: 'renamed' as 'changed' })).rejects.toThrow(/kind/);
  });

  it('stops delivering to a listener once it unsubscribed, and goes on delivering to the others', async () => {
    const { a, b } = await makePair({});
    const kept = await listen(b);
    const dropped: TierEvent[] = [];
    const unsubscribe = b.onEvent((event) => dropped.push(event));
    await a.appendChange({ ids: ['801'], kind: 'changed' });
    await until(
      () => changesIn(kept).length === 1 && changesIn(dropped).length === 1,
      'the first change at both listeners',
      10_000,
    );
    unsubscribe();
    await a.appendChange({ ids: ['802'], kind: 'changed' });
    await a.hint({ type: 'filled', id: '803' });
    await until(
      () => changesIn(kept).length === 2 && kept.some((event) => event.type === 'filled'),
      'the later change and hint at the listener kept',
      10_000,
    );
    expect(changesIn(dropped).map((change) => change.ids)).toEqual([['801']]);
    expect(dropped).toHaveLength(1);
  });

  it('puts every id of a change on the feed shard of that key, the same shard on every instance', async () => {
    const { a, b } = await makePair({});
    const keys = Array.from({ length: 30 }, (_, i) => String(700 + i));
    for (const key of keys) expect(b.shardOf(key)).toBe(a.shardOf(key));
    const parts = (await a.appendChange({ ids: keys, kind: 'changed' })) as FeedChange[];
    for (const part of parts) for (const id of part.ids) expect(a.shardOf(id)).toBe(part.shard);
    expect(new Set(parts.map((part) => part.shard)).size).toBe(parts.length); // one part per shard
    expect(parts.flatMap((part) => part.ids).sort()).toEqual([...keys].sort());
  });

  it('tells where its reader stands on each shard: the position of the last change it read there', async () => {
    const { a, b } = await makePair({});
    await listen(b);
    const before = b.feedPositions();
    expect(before.map((p) => p.shard)).toEqual(before.map((_, shard) => shard)); // one per shard, in order
    expect(before.every((p) => p.epoch !== '' && p.position !== '')).toBe(true); // the reader has read
    const parts = (await a.appendChange({
      ids: Array.from({ length: 9 }, (_, i) => String(600 + i)),
      kind: 'changed',
    })) as FeedChange[];
    for (const part of parts) expect(part.shard).toBeLessThan(before.length);
    await until(
      () => parts.every((part) => b.feedPositions()[part.shard]?.position === part.position),
      'b’s positions at the appended changes',
      10_000,
    );
    expect(b.feedPositions().map((p) => p.epoch)).toEqual(before.map((p) => p.epoch)); // the same feed
  });

  it('tells the oldest position a shard still keeps, so a reader knows whether its own can be replayed', async () => {
    const pair = await makePair({});
    const { a, b } = pair;
    expect(await b.oldestPosition(0)).toBeUndefined(); // nothing appended yet
    const key = keyOnShard(a, 0);
    const [first] = (await a.appendChange({ ids: [key], kind: 'changed' })) as FeedChange[];
    await a.appendChange({ ids: [key], kind: 'deleted' });
    expect(first!.shard).toBe(0);
    expect(await b.oldestPosition(0)).toBe(first!.position);
    await pair.appendAndTrimPast(b, 3);
    const oldest = await b.oldestPosition(0);
    expect(oldest).toEqual(expect.any(String));
    expect(comparePositions(oldest as string, first!.position)).toBeGreaterThan(0); // the first is trimmed away
  });

  it('reports no lag while nobody listens, and a short one while its reader keeps up', async () => {
    const { a, b } = await makePair({});
    expect(b.feedLagMs()).toBe(0);
    expect(b.feedStatus().lagMs).toBe(0);
    const atB = await listen(b);
    await a.appendChange({ ids: ['901'], kind: 'changed' });
    await until(() => changesIn(atB).length === 1, 'the change at b', 10_000);
    const lagMs = b.feedLagMs();
    expect(lagMs).toBeGreaterThanOrEqual(0);
    expect(lagMs).toBeLessThan(5000);
    expect(Math.abs(b.feedStatus().lagMs - b.feedLagMs())).toBeLessThan(50); // feedLagMs is feedStatus().lagMs alone
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close(); // EntryStore's close, as setup
    expect(await a.hint({ type: 'filled', id: '18' })).toBe(false);
    expect(await a.appendChange({ ids: ['18'], kind: 'changed' })).toBe(UNAVAILABLE);
    expect(await a.oldestPosition(0)).toBe(UNAVAILABLE);
  });
}

/** HotKeyRecord: the fleet's record of its hottest keys. */
function hotKeyRecordContract(makePair: Maker<HotKeyRecord & Pick<EntryStore, 'close'>>): void {
  it('keeps one record of the hottest keys for the fleet: reads from every instance summed, hottest first, bounded', async () => {
    const { a, b } = await makePair({ hotKeysMax: 3 });
    expect(await a.hottestKeys(10)).toEqual([]);
    expect(
      await a.recordReads(
        new Map([
          ['101', 5],
          ['102', 1],
          ['103', 2],
        ]),
      ),
    ).toBe(true);
    expect(
      await b.recordReads(
        new Map([
          ['102', 6],
          ['104', 1],
        ]),
      ),
    ).toBe(true);
    // 102: 7, 101: 5, 103: 2; 104 (1) is the coldest past the bound of 3 and is dropped.
    for (const tier of [a, b]) expect(await tier.hottestKeys(10)).toEqual(['102', '101', '103']);
    expect(await b.hottestKeys(2)).toEqual(['102', '101']);
    // Counts that are not positive integers and ids that are not keys are never recorded.
    await a.recordReads(
      new Map([
        ['105', 0],
        ['106', -3],
        ['107', 1.5],
        ['not-an-id', 100],
        ['042', 100],
      ]),
    );
    expect(await a.hottestKeys(10)).toEqual(['102', '101', '103']);
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close(); // EntryStore's close, as setup
    expect(await a.recordReads(new Map([['18', 1]]))).toBe(false);
    expect(await a.hottestKeys(1)).toBe(UNAVAILABLE);
  });
}

/** FleetBitmaps: plain bitmaps and small shared marks. */
function fleetBitmapsContract(makePair: Maker<FleetBitmaps & Pick<EntryStore, 'close'>>): void {
  it('keeps plain bitmaps for the fleet: bits set by one instance are seen by every instance, counted, deleted', async () => {
    const { a, b } = await makePair({});
    const name = `bloom-${randomUUID().slice(0, 6)}`;
    expect(await b.testBits(name, [3])).toBe('missing'); // no such bitmap: not the same as a bit not set
    expect(await a.setBits(name, [1], { onlyIfExists: true })).toBe(true);
    expect(await b.testBits(name, [1])).toBe('missing'); // a late writer does not recreate it
    expect(await a.setBits(name, [0, 3, 9, 70_000, 3], { ttlMs: 60_000 })).toBe(true);
    expect(await b.testBits(name, [0, 3, 9, 70_000])).toBe(true);
    expect(await b.testBits(name, [0, 3, 10])).toBe(false);
    expect(await b.countBits(name)).toBe(4);
    expect(await a.deleteBits(name)).toBe(true);
    expect(await b.testBits(name, [0])).toBe('missing');
    expect(await b.countBits(name)).toBe(0);
  });

  it('keeps small shared marks with an expiry, and stores one only if absent when asked (a lock)', async () => {
    const { a, b } = await makePair({});
    const name = `lock-${randomUUID().slice(0, 6)}`;
    expect(await a.readMark(name)).toBeUndefined();
    expect(await a.writeMark(name, 'a', 60_000, true)).toBe(true);
    expect(await b.writeMark(name, 'b', 60_000, true)).toBe(false);
    expect(await b.readMark(name)).toBe('a');
    expect(await b.writeMark(name, 'b2', 60_000)).toBe(true);
    expect(await a.readMark(name)).toBe('b2');
    expect(await a.writeMark(`${name}-short`, 'x', 30)).toBe(true);
    await until(async () => (await b.readMark(`${name}-short`)) === undefined, 'the mark to expire', 10_000);
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close(); // EntryStore's close, as setup
    expect(await a.setBits('b', [1])).toBe(false);
    expect(await a.testBits('b', [1])).toBe(UNAVAILABLE);
    expect(await a.countBits('b')).toBe(UNAVAILABLE);
    expect(await a.deleteBits('b')).toBe(false);
    expect(await a.readMark('m')).toBe(UNAVAILABLE);
    expect(await a.writeMark('m', 'v', 1000)).toBe(false);
  });
}

/** FleetBuckets: token buckets. */
function fleetBucketsContract(makePair: Maker<FleetBuckets & Pick<EntryStore, 'close'>>): void {
  it('keeps token buckets for the fleet: a burst, then none until refilled, shared by every instance', async () => {
    const { a, b } = await makePair({});
    const bucket = `client-${randomUUID().slice(0, 6)}`;
    // 0.001 tokens a second: nothing refills within the test.
    for (let i = 0; i < 3; i++)
      expect(await (i % 2 === 0 ? a : b).takeToken(bucket, 3, 0.001)).toMatchObject({ allowed: true });
    expect(await a.takeToken(bucket, 3, 0.001)).toMatchObject({ allowed: false });
    expect(await b.takeToken(bucket, 3, 0.001)).toMatchObject({ allowed: false });
    expect(await b.takeToken(`${bucket}-other`, 3, 0.001)).toMatchObject({ allowed: true, tokens: 2 });
  });

  it('answers UNAVAILABLE (never throws) once closed', async () => {
    const { a } = await makePair({});
    await a.close(); // EntryStore's close, as setup
    expect(await a.takeToken('t', 1, 1)).toBe(UNAVAILABLE);
  });
}

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
    await until(
      () => engines.every((engine) => engine.stats().waiting + engine.stats().inFlight > 0) && calls === 1,
      'every engine waiting on the one load',
      10_000,
    );
    gate.resolve();
    const answers = await lookups;
    expect(calls).toBe(1);
    expect(new Set(answers.map((a) => a.entry.body.toString())).size).toBe(1);
    await engines[0]!.invalidate('42');
    await until(
      () => engines.every((engine) => engine.peek('42') === undefined),
      'the invalidation on every engine',
      10_000,
    );
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
