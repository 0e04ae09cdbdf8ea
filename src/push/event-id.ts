import type { FeedPosition } from '../shared-tier/contract.js';

/**
 * SSE event ids are feed positions: per shard, the epoch's first 8 characters and the position up to which every
 * change was pushed (`3f2a9c1e.0.1796170625192-0_…`). Another epoch's, or one the feed no longer keeps, gets a resync.
 */
export type FeedVector = Map<number, { epoch: string; position: string }>;

const EPOCH_TAG = 8;
const PART = /^([0-9a-zA-Z-]{1,8})\.(\d{1,2})\.(\d{1,20}-\d{1,20})$/;

export function epochTag(epoch: string): string {
  return epoch.slice(0, EPOCH_TAG);
}

export function encodeEventId(vector: FeedVector): string {
  const parts: string[] = [];
  // A shard whose epoch is not known yet is left out: resuming treats its groups as changed.
  for (const [shard, { epoch, position }] of [...vector].sort(([a], [b]) => a - b))
    if (epoch !== '') parts.push(`${epochTag(epoch)}.${shard}.${position}`);
  return parts.join('_');
}

/** A Last-Event-ID as a vector (epoch tags, not whole epochs), or `undefined` when it is not one of ours. */
export function decodeEventId(text: string): FeedVector | undefined {
  if (text.length === 0 || text.length > 2048) return undefined;
  const vector: FeedVector = new Map();
  for (const part of text.split('_')) {
    const match = PART.exec(part);
    if (match === null) return undefined;
    const shard = Number(match[2]);
    if (shard > 63 || vector.has(shard)) return undefined;
    vector.set(shard, { epoch: match[1]!, position: match[3]! });
  }
  return vector;
}

export function vectorOf(positions: readonly FeedPosition[]): FeedVector {
  return new Map(
    positions.map(({ shard, epoch, position }) => [shard, { epoch, position: position === '' ? '0-0' : position }]),
  );
}
