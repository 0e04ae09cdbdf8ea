import { describe, expect, it } from 'vitest';
import { feedShardKeys, shardOfKey } from '../src/shared-tier/redis/feed-keys.js';
import { ShardReader, type FeedConnection, type FeedReadReply } from '../src/shared-tier/redis/feed-reader.js';
import { ManualClock } from '../src/util/clock.js';
import type { TierEvent } from '../src/shared-tier/contract.js';
import { deferred, type Deferred } from './helpers/deferred.js';
import { until } from './helpers/until.js';
import calculateSlot from 'cluster-key-slot';

/**
 * The reader's own logic where a real Redis cannot be made to misbehave on
 * cue: a connection that stops answering (a stuck socket). The connection
 * here answers the reader's two commands from a script of replies; everything
 * else about the feed is tested against real Redis (shared-tier.contract,
 * feed.integration).
 */
function scriptedConnection(replies: (() => Promise<FeedReadReply>)[]) {
  let disconnected = false;
  const pendingWaits: Deferred<null>[] = [];
  const connection = {
    gppFeedRead: () => (replies.shift() ?? (() => new Promise<FeedReadReply>(() => {})))(),
    xread: () => {
      const wait = deferred<null>();
      pendingWaits.push(wait);
      return wait.promise;
    },
    disconnect: () => {
      disconnected = true;
    },
  } as unknown as FeedConnection;
  return { connection, isDisconnected: () => disconnected, pendingWaits };
}

describe('ShardReader', () => {
  it('replaces a connection whose read does not answer within the block time plus the stuck allowance, and reads on from its position', async () => {
    const clock = new ManualClock();
    const entry = (position: string, ids: string) => [position, ['kind', 'changed', 'ids', ids]];
    const first = scriptedConnection([
      async () => ['start', 'epoch-1', '100-0', 5, [], '0-0', []],
      // then the connection goes silent: the next read never answers
    ]);
    const positions: string[] = [];
    const second = scriptedConnection([
      async () => {
        positions.push('asked');
        return ['ok', 'epoch-1', '101-0', 6, [entry('101-0', '42')], '0-0', []];
      },
    ]);
    const connections = [first, second];
    const events: TierEvent[] = [];
    const reader = new ShardReader({
      keys: feedShardKeys('t:', 1)[0]!,
      connect: () => connections.shift()!.connection,
      instanceId: 'me',
      clock,
      blockMs: 1000,
      stuckMs: 1000,
      batch: 100,
      isValidKey: (key) => /^\d+$/.test(key),
      emit: (event) => events.push(event),
    });
    await until(() => first.pendingWaits.length === 1, 'the first blocking wait', 5000);
    expect(reader.position).toBe('100-0');
    // The blocking wait never answers: past 1000 + 1000 ms the reader gives up on the connection.
    clock.advance(1999);
    await Promise.resolve();
    expect(first.isDisconnected()).toBe(false);
    clock.advance(1);
    await until(() => first.isDisconnected(), 'the stuck connection replaced', 5000);
    await until(() => clock.pending > 0, 'the retry backoff', 5000);
    clock.advance(1000);
    await until(() => events.length === 1, 'the change read on the new connection', 5000);
    expect(events[0]).toMatchObject({ type: 'change', change: { ids: ['42'], position: '101-0', replayed: true } });
    expect(reader.position).toBe('101-0');
    expect(reader.resumes).toBe(1);
    second.pendingWaits[0]?.resolve(null);
    const stopped = reader.stop();
    clock.advance(5000);
    await stopped;
  });
});

describe('feed keys', () => {
  it('puts shard i of n in the i-th of n equal slot ranges, and every key of a shard in one slot', () => {
    for (const shards of [1, 2, 3, 4, 8]) {
      const keys = feedShardKeys('gpp:', shards);
      expect(keys).toHaveLength(shards);
      keys.forEach((k, i) => {
        expect(new Set([calculateSlot(k.changes), calculateSlot(k.hints), calculateSlot(k.epoch)])).toEqual(
          new Set([k.slot]),
        );
        if (shards > 1) {
          expect(k.slot).toBeGreaterThanOrEqual(Math.floor((i * 16384) / shards));
          expect(k.slot).toBeLessThan(Math.floor(((i + 1) * 16384) / shards));
        }
      });
    }
    expect(feedShardKeys('gpp:', 1)[0]!.changes).toBe('gpp:{feed}:changes');
  });

  it('shards a group id by id mod shards, what a producer outside the proxy computes', () => {
    expect(shardOfKey('42', 3)).toBe(0);
    expect(shardOfKey('43', 3)).toBe(1);
    expect(shardOfKey('9007199254740993', 4)).toBe(1); // exact past 2^53
    expect(shardOfKey('anything', 1)).toBe(0);
  });
});
