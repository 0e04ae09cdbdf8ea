import {
  MAX_CHANGE_IDS,
  parseLeaseHint,
  timeOfPosition,
  type Change,
  type FeedChange,
  type LeaseHint,
} from '../contract.js';

/**
 * The fields of a feed entry, the contract producers outside the proxy follow (docs/fleet.md, "The change feed"):
 *   XADD <changes key> MAXLEN ~ <retention> * kind changed ids 42,43 [version <v>] [producer <name>]
 */
export function changeFields(change: Change, producer: string): string[] {
  const fields = ['kind', change.kind, 'ids', change.ids.join(',')];
  if (change.version !== undefined) fields.push('version', change.version);
  if (change.sharedCopiesDeleted === true) fields.push('shared', 'deleted');
  fields.push('producer', producer);
  return fields;
}

export function hintFields(hint: LeaseHint, producer: string): string[] {
  const fields = ['type', hint.type, 'id', hint.id, 'from', producer];
  if (hint.type === 'failed') fields.push('code', hint.code, 'status', String(hint.status), 'message', hint.message);
  return fields;
}

/** Why an entry of the change stream was not applied (a label of the skipped-entries metric). */
export type SkipReason = 'unknown_kind' | 'bad_ids' | 'garbage';

/**
 * A change read from the stream. Anyone who can write there can append, so nothing in an entry may stop the reader:
 * an unknown kind, no valid id or a malformed entry is skipped (and counted), invalid ids among valid ones dropped.
 */
export function decodeChange(
  position: unknown,
  raw: unknown,
  shard: number,
  isValidKey: (key: string) => boolean,
  replayed: boolean,
): { change: FeedChange; droppedIds: number } | { skipped: SkipReason } {
  if (typeof position !== 'string' || !/^\d{1,20}-\d{1,20}$/.test(position)) return { skipped: 'garbage' };
  const fields = fieldsOf(raw);
  if (fields === undefined) return { skipped: 'garbage' };
  const kind = fields.get('kind');
  if (kind !== 'changed' && kind !== 'deleted') return { skipped: 'unknown_kind' };
  const listed = (fields.get('ids') ?? '').split(',');
  if (listed.length > MAX_CHANGE_IDS) return { skipped: 'bad_ids' };
  const ids = [...new Set(listed.map((id) => id.trim()).filter((id) => isValidKey(id)))];
  if (ids.length === 0) return { skipped: 'bad_ids' };
  const version = fields.get('version');
  const given = fields.get('producer') ?? '';
  const producer = given.length <= 128 ? given : '';
  const change: FeedChange = { ids, kind, shard, position, appendedAt: timeOfPosition(position), producer, replayed };
  if (version !== undefined && version.length <= 128) change.version = version;
  if (fields.get('shared') === 'deleted') change.sharedCopiesDeleted = true;
  return { change, droppedIds: listed.length - ids.length };
}

/** A hint read from the hint stream, or `undefined` for anything else. */
export function decodeHint(raw: unknown): (LeaseHint & { from?: string }) | undefined {
  const fields = fieldsOf(raw);
  return fields === undefined ? undefined : parseLeaseHint(Object.fromEntries(fields));
}

/** A stream entry's flat field list as a map (the last of repeated fields wins), or `undefined` if it is not one. */
function fieldsOf(raw: unknown): Map<string, string> | undefined {
  if (!Array.isArray(raw) || raw.length % 2 !== 0 || raw.length > 64) return undefined;
  const fields = new Map<string, string>();
  for (let i = 0; i < raw.length; i += 2) {
    const name: unknown = raw[i];
    const value: unknown = raw[i + 1];
    if (typeof name !== 'string' || typeof value !== 'string' || value.length > 64 * 1024) return undefined;
    fields.set(name, value);
  }
  return fields;
}
