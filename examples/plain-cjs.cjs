// Plain CommonJS: require() of this ES-module package works on Node >= 20.19 (require(esm)).
const { CoalescingCache, NOT_FOUND } = require('group-profile-proxy');

// No top-level await in CommonJS: the work goes in an async function.
async function main() {
  const cache = new CoalescingCache({ load: async (key) => (key === '0' ? NOT_FOUND : { key }) });
  const [first, second] = await Promise.all([cache.get('7'), cache.get('7')]);
  console.log(JSON.stringify({ first: first.outcome, second: second.outcome, value: first.entry.value }));
  await cache.close();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
