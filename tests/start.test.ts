import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/spawn.js';
import { until } from './helpers/until.js';

/**
 * `npm start` as a newcomer runs it: in a fresh clone (the sources, no dist/) with the repository's
 * dev dependencies, and in one installed without them (`npm ci --omit=dev`: no TypeScript). npm runs
 * in its own process group, so a server it leaves behind after SIGTERM (an orphan) is still found.
 * POSIX only: the start script `exec`s node, and the check uses process groups.
 */

const TIMEOUT = 60_000;
const SOURCES = ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'scripts'];
const OUTPUTS = ['dist/index.js', 'dist/cli.js'];

let temp: string;
/** A fresh clone with the dev dependencies (the repository's node_modules). */
let clone: string;
/** The same sources installed without dev dependencies: node_modules has everything but TypeScript. */
let prodClone: string;

interface NpmRun {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const groups: number[] = [];

/** Whether any process is left in the process group `pgid`. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/**
 * A shell's environment: nothing from the npm or the test runner this test may run under (their
 * settings, and the node_modules/.bin directories they put on PATH, where the repository's tsc is).
 */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!/^(npm_|NODE_OPTIONS$|NODE_ENV$|VITEST|PORT$|HOST$|ADDRESS_FILE$|UPSTREAM_URL$)/i.test(name))
      env[name] = value;
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => !/node_modules[\\/]\.bin$|node-gyp-bin$/.test(dir))
    .join(delimiter);
  return { ...env, ...extra };
}

/** How `run` exited, or a failure naming what it printed if it has not within `timeoutMs`. */
async function exitOf(
  run: NpmRun,
  what: string,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null }> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    run.exited,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`npm start did not exit ${what}:\n${run.output()}`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** `npm start` in `cwd`, leading its own process group (its pid is the group id). */
function npmStart(cwd: string, env: Record<string, string>): NpmRun {
  const child = spawn('npm', ['start'], {
    cwd,
    env: userEnv(env),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  groups.push(child.pid!);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** Waits for the proxy's address file (written once it listens) and returns the URL in it. */
async function listening(run: NpmRun, addressFile: string, timeoutMs: number): Promise<string> {
  let exited = false;
  void run.exited.then(() => (exited = true));
  await until(() => existsSync(addressFile) || exited, 'the address file', timeoutMs).catch((error: Error) => {
    throw new Error(`${error.message}; npm start printed:\n${run.output()}`);
  });
  expect(exited, `npm start exited before listening:\n${run.output()}`).toBe(false);
  return readFileSync(addressFile, 'utf8').trim();
}

/** Sends SIGTERM to npm's pid only, as a supervisor or `kill <pid>` does, and checks nothing is left. */
async function stopsOnSigterm(run: NpmRun, url: string, addressFile: string): Promise<void> {
  const response = await fetch(`${url}/groups/42`, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  process.kill(run.child.pid!, 'SIGTERM');
  const exit = await exitOf(run, 'on SIGTERM', 20_000);
  // npm exits after its script's process: whatever is still in the group now was orphaned.
  expect(groupAlive(run.child.pid!), `a process of npm start outlived it:\n${run.output()}`).toBe(false);
  // The server drained and exited 0 (which npm passes on), removing its address file.
  expect(exit, run.output()).toEqual({ code: 0, signal: null });
  expect(run.output()).toMatch(/group-profile-proxy stopped/);
  expect(existsSync(addressFile)).toBe(false);
  await expect(fetch(`${url}/groups/42`, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow();
}

function mtimes(dir: string): number[] {
  return OUTPUTS.map((output) => statSync(join(dir, output)).mtimeMs);
}

/** The newest mtime of the build's inputs in `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  const visit = (path: string): void => {
    const stat = statSync(path);
    if (stat.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
    else newest = Math.max(newest, stat.mtimeMs);
  };
  for (const input of ['src', 'tsconfig.json', 'tsconfig.build.json']) visit(join(dir, input));
  return newest;
}

/** dist/ in `clone`, built by the prestart script when it is not current (so it is after this). */
function ensureBuilt(): void {
  const result = spawnSync(process.execPath, ['scripts/start.mjs'], { cwd: clone, encoding: 'utf8', timeout: 45_000 });
  expect(result.status, result.stderr).toBe(0);
}

beforeAll(() => {
  temp = realpathSync(mkdtempSync(join(tmpdir(), 'gpp-start-')));
  clone = join(temp, 'clone');
  for (const source of SOURCES) cpSync(join(ROOT, source), join(clone, source), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'junction');

  prodClone = join(temp, 'prod');
  for (const source of SOURCES) cpSync(join(ROOT, source), join(prodClone, source), { recursive: true });
  const modules = join(prodClone, 'node_modules');
  mkdirSync(modules);
  for (const name of readdirSync(join(ROOT, 'node_modules')))
    if (name !== 'typescript' && name !== '.bin') symlinkSync(join(ROOT, 'node_modules', name), join(modules, name));
});

afterEach(() => {
  for (const pgid of groups.splice(0)) if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
});

afterAll(() => {
  if (temp !== undefined) rmSync(temp, { recursive: true, force: true });
});

describe.skipIf(process.platform === 'win32')('npm start', () => {
  it(
    'from a fresh clone builds dist/, serves, and on SIGTERM to npm the server drains and exits: no orphan',
    async () => {
      expect(existsSync(join(clone, 'dist'))).toBe(false);
      const addressFile = join(temp, 'fresh.url');
      const run = npmStart(clone, { PORT: '0', HOST: '127.0.0.1', ADDRESS_FILE: addressFile });
      const url = await listening(run, addressFile, 50_000);
      await stopsOnSigterm(run, url, addressFile);
      expect(run.output()).toMatch(/building dist\/ \(dist\/index\.js is missing\)/);
    },
    TIMEOUT,
  );

  it(
    'a start with dist/ current does not compile again',
    async () => {
      ensureBuilt();
      const before = mtimes(clone);
      const addressFile = join(temp, 'again.url');
      const run = npmStart(clone, { PORT: '0', HOST: '127.0.0.1', ADDRESS_FILE: addressFile });
      const url = await listening(run, addressFile, 20_000);
      expect(mtimes(clone)).toEqual(before);
      await stopsOnSigterm(run, url, addressFile);
      expect(run.output()).toMatch(/dist\/ is up to date, not rebuilding/);
      expect(run.output()).not.toMatch(/building dist\//);
    },
    TIMEOUT,
  );

  describe('installed without dev dependencies (no TypeScript)', () => {
    /** dist/ as built in the clone, copied with its times, so it is exactly as current there as here. */
    const copyDist = (): void => {
      ensureBuilt();
      rmSync(join(prodClone, 'dist'), { recursive: true, force: true });
      cpSync(join(clone, 'dist'), join(prodClone, 'dist'), { recursive: true, preserveTimestamps: true });
      // The sources were copied before the clone built, so they are older than its dist/ here too.
      const older = (newestSource(prodClone) - 60_000) / 1000;
      for (const source of ['src', 'tsconfig.json', 'tsconfig.build.json']) setTimes(join(prodClone, source), older);
    };

    it(
      'starts from a current dist/ without compiling',
      async () => {
        copyDist();
        const addressFile = join(temp, 'prod.url');
        const run = npmStart(prodClone, { PORT: '0', HOST: '127.0.0.1', ADDRESS_FILE: addressFile });
        const url = await listening(run, addressFile, 20_000);
        await stopsOnSigterm(run, url, addressFile);
        expect(run.output()).toMatch(/dist\/ is up to date, not rebuilding/);
      },
      TIMEOUT,
    );

    it.each([
      [
        'dist/ is missing',
        (): void => rmSync(join(prodClone, 'dist'), { recursive: true, force: true }),
        /dist\/index\.js is missing/,
      ],
      [
        'a source is newer than dist/',
        (): void => {
          const built = Math.min(...mtimes(prodClone)) / 1000;
          utimesSync(join(prodClone, 'src/cli.ts'), built + 1, built + 1);
        },
        /src\/cli\.ts is newer than dist\//,
      ],
    ])('refuses to start when %s, saying what to install', async (_, prepare, reason) => {
      copyDist();
      prepare();
      const run = npmStart(prodClone, { PORT: '0', HOST: '127.0.0.1', ADDRESS_FILE: join(temp, 'refused.url') });
      expect(await exitOf(run, 'with dist/ not current and no TypeScript', 20_000)).toEqual({ code: 1, signal: null });
      expect(run.output()).toMatch(reason);
      expect(run.output()).toMatch(/TypeScript is not installed; install the dev dependencies \(`npm ci`\)/);
      expect(run.output()).not.toMatch(/listening/);
    });
  });
});

/** Sets the access and modification times of `path` and everything under it. */
function setTimes(path: string, seconds: number): void {
  if (statSync(path).isDirectory()) for (const name of readdirSync(path)) setTimes(join(path, name), seconds);
  utimesSync(path, seconds, seconds);
}
