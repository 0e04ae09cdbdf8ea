import type { EnvelopeFields } from './envelope.js';
import { createEntry, entryFromFields, jitteredTtl, type CacheEntry } from './entry.js';
import { NOT_FOUND, type NotFound, type ResolvedEngineOptions } from './options.js';

/** The engine's options an entry is made with. */
export type EntryOptions<V> = Pick<
  ResolvedEngineOptions<V>,
  | 'serialize'
  | 'deserialize'
  | 'notFoundBody'
  | 'ttlMs'
  | 'negativeTtlMs'
  | 'ttlJitter'
  | 'maxStaleMs'
  | 'random'
  | 'now'
>;

/** What the loader answered for `key`, as an entry stored `now`, its TTL jittered. */
export function loadedEntry<V>(key: string, loaded: V | NotFound, now: number, o: EntryOptions<V>): CacheEntry<V> {
  return loaded === NOT_FOUND
    ? createEntry<V>(
        'missing',
        o.notFoundBody(key),
        now,
        jitteredTtl(o.negativeTtlMs, o.ttlJitter, o.random),
        o.maxStaleMs,
        o.deserialize,
      )
    : createEntry<V>(
        'found',
        o.serialize(loaded),
        now,
        jitteredTtl(o.ttlMs, o.ttlJitter, o.random),
        o.maxStaleMs,
        o.deserialize,
      );
}

/** The entry for a key the existence filter rejected: not found, fresh for the negative TTL, never stored. */
export function filteredEntry<V>(key: string, now: number, o: EntryOptions<V>): CacheEntry<V> {
  return createEntry<V>('missing', o.notFoundBody(key), now, o.negativeTtlMs, 0, o.deserialize);
}

/** A shared-tier value as an entry here, or `undefined` when it is not fresh past `notBefore` or does not decode. */
export function envelopeEntry<V>(
  fields: EnvelopeFields,
  notBefore: number,
  o: EntryOptions<V>,
): CacheEntry<V> | undefined {
  if (fields.freshUntil <= Math.max(notBefore, o.now())) return undefined;
  if (fields.kind === 'found') {
    try {
      o.deserialize(fields.body); // must decode; the value itself is decoded again only on access
    } catch {
      return undefined;
    }
  }
  return entryFromFields(fields, o.deserialize);
}
