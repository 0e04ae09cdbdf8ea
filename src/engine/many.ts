import { setMaxListeners } from 'node:events';
import { type ProxyError, toProxyError } from '../errors.js';
import type { GetOptions, Lookup } from './types.js';

/**
 * The entries of several keys, each looked up exactly as `get` does (L1, the key's one load in
 * flight, the shared tier and its lease, the loader), so concurrent single and multiple lookups
 * of a key share one load, across the fleet too. Keys asked twice are looked up once. The map
 * holds the keys in the order first asked, each with its lookup or the error of that key alone
 * (a ProxyError: not found is a lookup of a `missing` entry, not an error). Never rejects.
 */
export async function getMany<V>(
  get: (key: string, options: GetOptions | undefined) => Promise<Lookup<V>>,
  keys: Iterable<string>,
  options: GetOptions | undefined,
): Promise<Map<string, Lookup<V> | ProxyError>> {
  const answers = new Map<string, Lookup<V> | ProxyError>();
  const pending: Promise<unknown>[] = [];
  // Every key's wait listens for the caller's abort: on a signal of our own, so a hundred of them
  // are not taken for a listener leak on the caller's.
  const caller = options?.signal;
  const own = caller === undefined ? undefined : new AbortController();
  const forward = (): void => own!.abort(caller!.reason);
  if (own !== undefined) {
    setMaxListeners(0, own.signal);
    if (caller!.aborted) forward();
    else caller!.addEventListener('abort', forward, { once: true });
  }
  const getOptions = own === undefined ? options : { ...options, signal: own.signal };
  for (const key of keys) {
    if (answers.has(key)) continue;
    // A placeholder keeps the asked order; set() on a present key keeps its place.
    answers.set(key, undefined as unknown as Lookup<V>);
    pending.push(
      get(key, getOptions).then(
        (lookup) => answers.set(key, lookup),
        (error: unknown) => answers.set(key, toProxyError(error)),
      ),
    );
  }
  try {
    await Promise.all(pending);
  } finally {
    caller?.removeEventListener('abort', forward);
  }
  return answers;
}
