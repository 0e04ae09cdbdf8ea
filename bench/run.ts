/**
 * The Node runner for the benchmark scenarios (the same ones as bench/k6/),
 * for machines without k6: `npm run bench -- <scenario> [--flag <value>]...`,
 * `npm run bench -- --help` for the scenarios and their flags.
 * It starts what it needs (mock backend, proxy) on loopback, prints a markdown
 * table and writes the rows to bench/results/<scenario>.json. Exit status: 0
 * done, 1 the run failed, 2 a usage error (see bench/lib/cli.ts).
 */
import { EXIT_OK, runCli } from './lib/cli.js';
import { SCENARIOS } from './scenarios/index.js';

const code = await runCli(process.argv.slice(2), SCENARIOS);
// A failed run may leave a child's pipe or a timer behind: do not wait for them.
if (code !== EXIT_OK) process.exit(code);
