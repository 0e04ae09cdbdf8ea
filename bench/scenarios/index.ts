/** Every scenario of `npm run bench`, with its line of help, its options (flags) and their defaults. */
import { type Registry, scenario } from '../lib/cli.js';
import { BURST_DEFAULTS, burst, checkBurstOptions } from './burst.js';
import { CHANGES_DEFAULTS, changes } from './changes.js';
import { DISTINCT_BURST_DEFAULTS, distinctBurst } from './distinct-burst.js';
import { FLEET_DEFAULTS, fleet } from './fleet.js';
import { COLD_BURST_DEFAULTS, HOT_PATH_DEFAULTS, coldBurst, hotPath } from './hot-path.js';
import { INSTRUCTIONS_DEFAULTS, instructions } from './instructions.js';
import { MEMORY_DEFAULTS, memory } from './memory.js';
import { checkMissPathOptions, MISS_PATH_DEFAULTS, missPath } from './miss-path.js';
import { MULTI_GET_DEFAULTS, multiGet } from './multi-get.js';
import { OUTAGE_DEFAULTS, outage } from './outage.js';
import { PENETRATION_DEFAULTS, penetration } from './penetration.js';
import { PUSH_DEFAULTS, push } from './push.js';
import { WARM_START_BENCH_DEFAULTS, warmStartBench } from './warm-start.js';
import { ZIPF_DEFAULTS, zipf } from './zipf.js';

export const SCENARIOS: Registry = {
  burst: scenario({
    about:
      'N simultaneous requests (--requests) for one cold group, with and without the proxy, then a sweep over --levels; writes the downstream-calls chart',
    defaults: BURST_DEFAULTS,
    check: checkBurstOptions,
    run: burst,
  }),
  'distinct-burst': scenario({
    about:
      '5000 simultaneous requests for distinct cold groups against a healthy 200 ms backend: served, shed, timed out, breaker',
    defaults: DISTINCT_BURST_DEFAULTS,
    run: distinctBurst,
  }),
  zipf: scenario({
    about: 'Zipf(1.1) over 100k ids from cold, 64 connections, 10 s; batching off and on',
    defaults: ZIPF_DEFAULTS,
    run: zipf,
  }),
  outage: scenario({
    about: 'steady traffic over cached groups while the backend fails mid-run',
    defaults: OUTAGE_DEFAULTS,
    run: outage,
  }),
  changes: scenario({
    about:
      'the change feed on Redis: append rate, append → applied latency on 4 instances, stale reads while a reader is cut off',
    defaults: CHANGES_DEFAULTS,
    run: changes,
  }),
  push: scenario({
    about:
      'live updates: one change to 10,000 subscribers (one group, 1,000 groups), memory per idle subscriber, a 4-instance fleet, polling against push',
    defaults: PUSH_DEFAULTS,
    run: push,
  }),
  'multi-get': scenario({
    about:
      '1000 clients asking for 50 groups each out of 2000 at once: one multi-get per client against 50 single requests, batching off and on',
    defaults: MULTI_GET_DEFAULTS,
    run: multiGet,
  }),
  'warm-start': scenario({
    about:
      'a new instance joining a warm fleet under Zipf load: L1 misses in its first 10 s with WARM_START_COUNT against a cold start',
    defaults: WARM_START_BENCH_DEFAULTS,
    run: warmStartBench,
  }),
  penetration: scenario({
    about:
      '100,000 made-up ids from 10 scanners alongside Zipf traffic: upstream calls and p99 without a guard, with the existence filter, and with the miss budget too; the filter for 10 million ids',
    defaults: PENETRATION_DEFAULTS,
    run: penetration,
  }),
  fleet: scenario({
    about: '1000 simultaneous requests spread over 4 proxies sharing one redis-server',
    defaults: FLEET_DEFAULTS,
    run: fleet,
  }),
  'miss-path': scenario({
    about:
      'the miss path from cold: Zipf(1.1) over 100k ids, 64 connections, 50 ms origin; one proxy, one with Redis, one of a 4-proxy fleet; req/s, p99, Redis round trips per origin call',
    defaults: MISS_PATH_DEFAULTS,
    check: checkMissPathOptions,
    run: missPath,
  }),
  'hot-path': scenario({
    about: 'L1-hit req/s on one core vs a bare node:http server with the same bytes (wrk, taskset)',
    defaults: HOT_PATH_DEFAULTS,
    run: hotPath,
  }),
  instructions: scenario({
    about: 'L1-hit instructions per request vs the bare server, under valgrind callgrind (repeatable on a noisy VM)',
    defaults: INSTRUCTIONS_DEFAULTS,
    run: instructions,
  }),
  memory: scenario({
    about: 'resident memory with 100k cached ~1.5 KB profiles, and the L1_MAX_BYTES bound',
    defaults: MEMORY_DEFAULTS,
    run: memory,
  }),
  'cold-burst': scenario({
    about: '1000 identical cold requests over warm keep-alive connections, 50 ms origin: added latency',
    defaults: COLD_BURST_DEFAULTS,
    run: coldBurst,
  }),
};
