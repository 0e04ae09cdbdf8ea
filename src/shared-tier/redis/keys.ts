/** Redis key names. One cache key's keys share the hash tag `{key}`: one Cluster slot, so one script may touch all. */
export interface KeyNames {
  entry(key: string): string;
  lease(key: string): string;
  /** Set while a lookup found the key's lease held: the holder's fill then announces itself. */
  waited(key: string): string;
  /** The last feed position applied to the key (see DELETE_FOR_CHANGE). */
  changeMarker(key: string): string;
  /** The fleet's read counts of one window (see RECORD_READS): one slot for every window, `{hot}`. */
  hotReads(window: number): string;
  /** A plain bitmap (the Bloom filter's), in a slot of its own. */
  bits(name: string): string;
  /** A small shared value (the Bloom filter's state, its fill lock). */
  mark(name: string): string;
  /** A token bucket (a client's miss budget), in a slot of its own. */
  bucket(name: string): string;
}

export const PREFIX_PATTERN = /^[A-Za-z0-9:_.-]{0,64}$/;

export function keyNames(prefix: string): KeyNames {
  return {
    entry: (key) => `${prefix}{${key}}:entry`,
    lease: (key) => `${prefix}{${key}}:lease`,
    waited: (key) => `${prefix}{${key}}:waited`,
    changeMarker: (key) => `${prefix}{${key}}:changed`,
    hotReads: (window) => `${prefix}{hot}:reads:${window}`,
    bits: (name) => `${prefix}{bits:${name}}`,
    mark: (name) => `${prefix}{mark}:${name}`,
    bucket: (name) => `${prefix}{bucket:${name}}`,
  };
}
