import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { TierEvent } from '../src/shared-tier/contract.js';
import { RedisTier } from '../src/shared-tier/redis/redis-tier.js';
import { rawRedis } from './helpers/feed.js';
import { until } from './helpers/until.js';

/**
 * A failover to a replica that had not received the tail of the feed (#26): the stream the readers were reading
 * is gone, or is behind their positions. Either is a lost tail, and a lost tail is a reset (flush L1), as a
 * recreated or trimmed stream is.
 */
const tiers: RedisTier[] = [];
let raw: Redis | undefined;
afterEach(async () => {
  await Promise.all(tiers.splice(0).map((tier) => tier.close()));
  raw?.disconnect();
  raw = undefined;
});

async function reader() {
  const url = inject('redisUrl');
  const prefix = `lost-tail-${randomUUID().slice(0, 8)}:`;
  const writer = new RedisTier({ url, prefix, commandTimeoutMs: 2000, feedShards: 1 });
  const tier = new RedisTier({ url, prefix, commandTimeoutMs: 2000, feedShards: 1 });
  tiers.push(writer, tier);
  raw = rawRedis({ url }) as Redis;
  const events: TierEvent[] = [];
  tier.onEvent((event) => events.push(event));
  await until(() => writer.healthy && tier.healthy, 'both clients ready', 10_000);
  await tier.whenFeedReady();
  for (const id of ['1', '2', '3']) await writer.appendChange({ ids: [id], kind: 'changed' });
  const changed = (id: string) => events.some((e) => e.type === 'change' && e.change.ids.includes(id));
  await until(() => changed('3'), 'the three changes read', 10_000);
  const resets = () => events.filter((e) => e.type === 'reset').map((e) => (e as { reason: string }).reason);
  return { writer, tier, raw, keys: tier.feedKeys[0]!, changed, resets };
}

describe('a feed that lost its tail under a reader', () => {
  it('the stream is gone (its epoch kept): reset, and the changes appended since are read', async () => {
    const r = await reader();
    await r.raw.del(r.keys.changes);
    await r.writer.appendChange({ ids: ['4'], kind: 'changed' });
    await until(() => r.changed('4'), 'the change appended after the loss', 10_000);
    expect(r.resets()).toEqual(['epoch']);
  });

  it('the stream moved back behind the reader (a new master that never had the tail): reset, and its changes are read', async () => {
    const r = await reader();
    const [position] = r.tier.feedPositions().map((p) => p.position);
    // What a replica promoted before it had the tail holds: new appends whose ids (from a clock behind the old
    // master's) sort before the reader's position. Ids of the millisecond before it, so none can collide.
    const behind = Number(position!.split('-')[0]) - 1;
    const rewrite = r.raw.multi().del(r.keys.changes);
    for (const id of ['5', '6', '7'])
      rewrite.xadd(r.keys.changes, `${behind}-${id}`, 'kind', 'changed', 'ids', id, 'producer', 'other');
    const replies = await rewrite.exec();
    expect(replies?.every(([error]) => error === null)).toBe(true);
    await r.writer.appendChange({ ids: ['8'], kind: 'changed' });
    // The entries behind the old position were never seen here: read after the reset, not skipped.
    await until(() => ['5', '6', '7', '8'].every(r.changed), 'every change the new master holds', 10_000);
    expect(r.resets()).toEqual(['epoch']);
  });
});
