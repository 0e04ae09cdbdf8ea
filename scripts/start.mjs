// Makes dist/ current for `npm start` (prestart), `npm pack` (prepack) and installs of a clone or a git
// dependency (prepare), with nothing but Node: it compiles only when dist/ is missing or older than its
// sources, so a start after a build does not recompile, and a start without dev dependencies
// (`npm ci --omit=dev`) works as long as dist/ is current.
//
//   node scripts/start.mjs             build if stale; fail if it is stale and TypeScript is not installed
//   node scripts/start.mjs --optional  the same, but only a note when TypeScript is not installed
//   node scripts/start.mjs --clean     remove dist/ and build it from scratch (what a tarball ships)
import { spawn } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUTPUTS = ['dist/index.js', 'dist/cli.js'];
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json'];
const say = (message) => process.stderr.write(`group-profile-proxy: ${message}\n`);

const mode = process.argv[2];
if (mode !== undefined && mode !== '--optional' && mode !== '--clean') {
  say(`unknown option ${mode}: expected --optional or --clean`);
  process.exit(2);
}

/** The newest file under the inputs, or undefined when there are none (an install of dist/ alone). */
function newestInput() {
  let newest;
  const visit = (path) => {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined) return;
    if (stat.isDirectory()) {
      for (const name of readdirSync(path)) visit(join(path, name));
    } else if (newest === undefined || stat.mtimeMs > newest.mtimeMs) {
      newest = { path, mtimeMs: stat.mtimeMs };
    }
  };
  for (const input of INPUTS) visit(join(ROOT, input));
  return newest;
}

/** Why dist/ needs a build, or undefined when it is current. */
function staleness() {
  if (mode === '--clean') return 'a clean build was asked for';
  let built = Number.POSITIVE_INFINITY;
  for (const output of OUTPUTS) {
    const stat = statSync(join(ROOT, output), { throwIfNoEntry: false });
    if (stat === undefined) return `${output} is missing`;
    built = Math.min(built, stat.mtimeMs);
  }
  const newest = newestInput();
  // Equal times count as stale: on a coarse clock, an edit in the build's second may not be in dist/.
  if (newest !== undefined && newest.mtimeMs >= built) return `${relative(ROOT, newest.path)} is newer than dist/`;
  return undefined;
}

function tscPath() {
  try {
    return createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

const reason = staleness();
if (reason === undefined) {
  say('dist/ is up to date, not rebuilding');
  process.exit(0);
}
const tsc = tscPath();
if (tsc === undefined) {
  const advice = 'install the dev dependencies (`npm ci`), then run `npm run build`';
  if (mode === '--optional') {
    say(`not building dist/ (${reason}): TypeScript is not installed; to build it, ${advice}`);
    process.exit(0);
  }
  say(`cannot build dist/ (${reason}): TypeScript is not installed; ${advice}`);
  process.exit(1);
}
say(`building dist/ (${reason})`);
if (mode === '--clean') rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
// --noEmitOnError: a failed build leaves dist/ as it was (and stale), so the next start tries again.
const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--noEmitOnError'], {
  cwd: ROOT,
  stdio: 'inherit',
});
// npm forwards SIGINT and SIGTERM to its script; pass them on rather than leave tsc writing dist/ alone.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  if (code === 0) return;
  say(`building dist/ failed (${signal ?? `tsc exited ${code}`})`);
  process.exit(1);
});
