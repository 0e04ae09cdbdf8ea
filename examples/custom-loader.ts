/**
 * The engine over any keyed async source: numeric keys, a custom loader (here
 * an in-memory "database" with a slow query), typed values.
 */
import { createKeyedCache, NOT_FOUND, type KeyedCache } from 'group-profile-proxy';

export interface User {
  id: number;
  name: string;
}

export function createUserCache(database: Map<number, User>, queries: number[]): KeyedCache<number, User> {
  return createKeyedCache<number, User>({
    load: async (id) => {
      queries.push(id);
      await new Promise((resolve) => setTimeout(resolve, 20)); // a slow query
      return database.get(id) ?? NOT_FOUND;
    },
    keyToString: (id) => String(id),
    keyFromString: (key) => Number(key),
    ttlMs: 5_000,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const queries: number[] = [];
  const users = createUserCache(new Map([[1, { id: 1, name: 'alice' }]]), queries);
  const results = await Promise.all(Array.from({ length: 100 }, () => users.value(1)));
  console.log(`${results.length} lookups, ${queries.length} query:`, results[0]);
  await users.close();
}
