import { CoalescingCache, type GetOptions, type InvalidationResult, type Lookup } from './engine.js';
import type { ProxyError } from '../errors.js';
import type { CacheEntry } from './entry.js';
import type { EngineOptions, LoadContext, NotFound } from './options.js';
import { functionOption, OptionError } from '../util/options.js';

export interface KeyedCacheOptions<K, V> extends Omit<EngineOptions<V>, 'load'> {
  /** Loads one key from the source of truth. Required. */
  load: (key: K, context: LoadContext) => Promise<V | NotFound>;
  /** The cache key of `key`; equal keys must give equal strings. Default `String(key)`. */
  keyToString?: (key: K) => string;
  /**
   * Turns a cache key back into a key for `load` (loads run per cache key, and a background
   * refresh has no caller's key at hand). Required unless keys are strings.
   */
  keyFromString?: (key: string) => K;
}

/** The engine with typed keys: any keyed async source, any value type. */
export interface KeyedCache<K, V> {
  readonly engine: CoalescingCache<V>;
  get(key: K, options?: GetOptions): Promise<Lookup<V>>;
  /** Several keys, each as `get` (sharing loads with every other lookup); keys with equal cache keys once, in the order first asked. Never rejects. */
  getMany(keys: Iterable<K>, options?: GetOptions): Promise<Map<K, Lookup<V> | ProxyError>>;
  /** The loaded value, or `undefined` when the source said it does not exist. */
  value(key: K, options?: GetOptions): Promise<V | undefined>;
  peek(key: K): CacheEntry<V> | undefined;
  invalidate(keys: readonly K[]): Promise<InvalidationResult>;
  close(): Promise<void>;
}

export function createKeyedCache<K = string, V = unknown>(options: KeyedCacheOptions<K, V>): KeyedCache<K, V> {
  const { load, keyToString, keyFromString, ...engineOptions } = options;
  const keyText = keyToString === undefined ? String : functionOption<(key: K) => string>('keyToString', keyToString);
  const fromString =
    keyFromString === undefined
      ? (key: string) => key as unknown as K
      : functionOption<(key: string) => K>('keyFromString', keyFromString);
  if (keyToString !== undefined && keyFromString === undefined) {
    throw new OptionError('keyFromString', 'a function (required when keyToString is given)', keyFromString);
  }
  const engine = new CoalescingCache<V>({ ...engineOptions, load: (key, context) => load(fromString(key), context) });
  return {
    engine,
    get: (key, getOptions) => engine.get(keyText(key), getOptions),
    getMany: async (keys, getOptions) => {
      const byCacheKey = new Map<string, K>();
      for (const key of keys) {
        const cacheKey = keyText(key);
        if (!byCacheKey.has(cacheKey)) byCacheKey.set(cacheKey, key);
      }
      const answers = await engine.getMany(byCacheKey.keys(), getOptions);
      return new Map([...answers].map(([cacheKey, answer]) => [byCacheKey.get(cacheKey)!, answer]));
    },
    value: async (key, getOptions) => (await engine.get(keyText(key), getOptions)).entry.value,
    peek: (key) => engine.peek(keyText(key)),
    invalidate: (keys) => engine.invalidate(keys.map(keyText)),
    close: () => engine.close(),
  };
}
