// Plain JavaScript (ESM, no TypeScript): the package works without a build step of yours.
import { CoalescingCache, NOT_FOUND } from 'group-profile-proxy';

const cache = new CoalescingCache({ load: async (key) => (key === '0' ? NOT_FOUND : { key }) });
const [first, second] = await Promise.all([cache.get('7'), cache.get('7')]);
console.log(JSON.stringify({ first: first.outcome, second: second.outcome, value: first.entry.value }));
await cache.close();
