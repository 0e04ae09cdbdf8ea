import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/spawn.js';

/**
 * The package as a newcomer installs it. A fresh clone (the repository's files as git sees them, so no
 * dist/, with the dev dependencies the repository installed) is packed with `npm pack`, which must
 * build dist/ itself. A new app made by `npm init -y` installs the tarball next to its own hono and
 * @hono/node-server, at the lowest versions the package's peer ranges accept, so they differ from the
 * ones the repository builds with (the lockfile's): a package bringing its own copy would show here.
 * npm installs with --prefer-offline, from the cache `npm ci` filled; what is not there (the older hono)
 * comes from the registry once. TypeScript and @types/node are the repository's, standing in for the
 * app's `npm install -D typescript @types/node`.
 */

const TIMEOUT = 60_000;
const SETUP_TIMEOUT = 120_000;
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

// Run by both the .mjs (`import`) and the .cjs (`require`) consumer with `m` bound to the package.
const CHECKS = `
const fns = ['createGroupProfileCache', 'createProxyApp', 'CoalescingCache', 'OptionError'];
const errors = [];
const cases = { '{}': [{}], "{ upstream: 'x' }": [{ upstream: 'x' }], '{ upstream: null }': [{ upstream: null }], undefined: [undefined], '': [] };
for (const [label, args] of Object.entries(cases)) {
  try {
    const made = m.createGroupProfileCache(...args);
    await made.close();
    errors.push({ call: 'createGroupProfileCache(' + label + ')', thrown: false });
  } catch (e) {
    errors.push({ call: 'createGroupProfileCache(' + label + ')', thrown: true, name: e?.name, message: String(e?.message), option: e?.option, isOptionError: e instanceof m.OptionError });
  }
}
console.log(JSON.stringify({
  resolved,
  types: Object.fromEntries(fns.map((n) => [n, typeof m[n]])),
  // Node adds __esModule to a require()d ES module namespace only when it has a default export; ignore it either way.
  names: Object.keys(m).filter((n) => n !== '__esModule').sort(),
  errors,
}));
`;

const ESM = `import * as m from 'group-profile-proxy';
import { fileURLToPath } from 'node:url';
const resolved = fileURLToPath(import.meta.resolve('group-profile-proxy'));
${CHECKS}`;

// A .cjs file cannot use top-level await, hence the async wrapper; the load itself is a synchronous require().
const CJS = `const m = require('group-profile-proxy');
const resolved = require.resolve('group-profile-proxy');
(async () => {
${CHECKS}
})().catch((e) => { console.error(e); process.exitCode = 1; });`;

// The embedding example, compiled in the app, with the app's Hono: the package's routes must be
// instances of that very class (one hono in the app), and answer through it.
const RUN_EMBED = `import { Hono } from 'hono';
import { groupProfileRoutes, startMockBackend } from 'group-profile-proxy';
import { createApp } from './out/embed-hono.js';
const backend = await startMockBackend({ port: 0 });
const { app, profiles } = createApp(backend.url);
const response = await app.request('/api/groups/42');
console.log(JSON.stringify({
  status: response.status,
  body: await response.json(),
  routesAreTheAppsHono: groupProfileRoutes({ engine: profiles.engine }) instanceof Hono,
}));
await profiles.close();
await backend.close();
`;

interface Report {
  resolved: string;
  types: Record<string, string>;
  names: string[];
  errors: {
    call: string;
    thrown: boolean;
    name?: string;
    message?: string;
    option?: string;
    isOptionError?: boolean;
  }[];
}

interface Manifest {
  type?: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  version: string;
}

let temp: string;
/** The fresh clone, and the files in it. */
let clone: string;
let cloneFiles: string[];
/** What `npm pack` put in the tarball. */
let packedFiles: string[];
/** The newcomer's app, with the tarball installed. */
let app: string;
/** The app's package.json as `npm init -y` wrote it. */
let initialAppManifest: Manifest;
/** The hono and @hono/node-server versions the app installed: the lowest the peer ranges accept. */
let lowest: Record<string, string>;
/** `tsc` on the embedding example with the app as `npm init -y` made it, and once it is an ES module. */
let typecheckAsCommonJs: SpawnSyncReturns<string>;
let typecheckAsModule: SpawnSyncReturns<string>;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** npm's own settings pass through; what an npm running this test sets about its project does not. */
function npmEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env))
    if (/^(npm_package_|npm_lifecycle_|npm_config_local_prefix$|NODE_OPTIONS$)/i.test(name)) delete env[name];
  return env;
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, {
    cwd,
    env: npmEnv(),
    encoding: 'utf8',
    timeout: 90_000,
    stdio: ['ignore', 'pipe', 'pipe'],
    shell: process.platform === 'win32',
  });
}

function node(args: string[]): SpawnSyncReturns<string> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // nothing from the test runner's loaders may help the app resolve the package
  return spawnSync(process.execPath, args, { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
}

function expectSuccess(result: SpawnSyncReturns<string>, what: string): string {
  expect(result.status, `${what} exited ${result.status}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(
    0,
  );
  return result.stdout;
}

function runConsumer(file: string): Report {
  // Some Node 20/22 releases print an ExperimentalWarning for require() of an ES module: stderr is shown on failure, never asserted empty.
  const stdout = expectSuccess(node([file]), `node ${file}`);
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as Report;
  // From the installed tarball, never the repository (a self-reference or a stray link would hide a packing mistake).
  expect(report.resolved.startsWith(join(app, 'node_modules', 'group-profile-proxy') + sep)).toBe(true);
  return report;
}

beforeAll(() => {
  temp = realpathSync(mkdtempSync(join(tmpdir(), 'gpp-pack-')));

  // A fresh clone: the files git has or would add, without what .gitignore keeps out (dist/, node_modules/),
  // and without files deleted in the work tree.
  clone = join(temp, 'clone');
  cloneFiles = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((file) => file !== '' && lstatSync(join(ROOT, file), { throwIfNoEntry: false })?.isFile() === true);
  for (const file of cloneFiles) {
    mkdirSync(dirname(join(clone, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(clone, file));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'junction');

  const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', temp], clone)) as {
    filename: string;
    files: { path: string }[];
  }[];
  packedFiles = packed!.files.map((file) => file.path);
  const tarball = join(temp, packed!.filename);

  app = join(temp, 'app');
  mkdirSync(app);
  npm(['init', '-y'], app);
  initialAppManifest = readJson<Manifest>(join(app, 'package.json'));
  const peers = readJson<Manifest>(join(clone, 'package.json')).peerDependencies ?? {};
  lowest = Object.fromEntries(
    Object.entries(peers).map(([name, range]) => [name, /^\^(\d+\.\d+\.\d+)$/.exec(range)?.[1] ?? range]),
  );
  npm(
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--no-update-notifier',
      tarball,
      ...['hono', '@hono/node-server'].map((name) => `${name}@${lowest[name] ?? 'latest'}`),
    ],
    app,
  );

  copyFileSync(join(ROOT, 'examples', 'embed-hono.ts'), join(app, 'embed-hono.ts'));
  for (const example of ['plain-esm.mjs', 'plain-cjs.cjs'])
    copyFileSync(join(ROOT, 'examples', example), join(app, example));
  writeFileSync(join(app, 'check.mjs'), ESM);
  writeFileSync(join(app, 'check.cjs'), CJS);
  writeFileSync(join(app, 'run-embed.mjs'), RUN_EMBED);
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        outDir: 'out',
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      files: ['embed-hono.ts'],
    }),
  );
  typecheckAsCommonJs = node([TSC, '-p', 'tsconfig.json', '--noEmit']);
  npm(['pkg', 'set', 'type=module'], app);
  typecheckAsModule = node([TSC, '-p', 'tsconfig.json']);
}, SETUP_TIMEOUT);

afterAll(() => {
  if (temp !== undefined) rmSync(temp, { recursive: true, force: true });
});

describe('npm pack of a fresh clone', () => {
  it('builds dist/ and ships it, with README.md, LICENSE and docs/, and nothing else', () => {
    expect(cloneFiles.some((file) => file.startsWith('dist/'))).toBe(false);
    expect(packedFiles).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'LICENSE',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/cli.js',
      ]),
    );
    // All of src/ compiled, not a partial or stale dist/.
    const compiled = cloneFiles
      .filter((file) => /^src\/.*\.ts$/.test(file) && !file.endsWith('.d.ts'))
      .flatMap((file) => [
        file.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'),
        file.replace(/^src\//, 'dist/').replace(/\.ts$/, '.d.ts'),
      ]);
    expect(packedFiles).toEqual(expect.arrayContaining(compiled));
    const docs = cloneFiles.filter((file) => file.startsWith('docs/'));
    expect(packedFiles).toEqual(expect.arrayContaining(docs));
    expect(
      packedFiles.filter(
        (file) => !/^(dist|docs)\//.test(file) && !['package.json', 'README.md', 'LICENSE'].includes(file),
      ),
    ).toEqual([]);
  });
});

describe('installed from the tarball in a new app, beside the app\u2019s own hono', () => {
  it('uses the app\u2019s hono and @hono/node-server (peer dependencies), with no copy of its own', () => {
    const installed = join(app, 'node_modules', 'group-profile-proxy');
    for (const name of ['hono', '@hono/node-server']) {
      expect(existsSync(join(installed, 'node_modules', name)), `a nested ${name}`).toBe(false);
      expect(readJson<Manifest>(join(app, 'node_modules', name, 'package.json')).version).toBe(lowest[name]);
    }
    const manifest = readJson<Manifest>(join(installed, 'package.json'));
    expect(Object.keys(manifest.peerDependencies ?? {}).sort()).toEqual(['@hono/node-server', 'hono']);
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('hono');
    expect(Object.keys(manifest.dependencies ?? {})).not.toContain('@hono/node-server');
    // The app's hono is not the repository's: the test would not see a second copy if they were the same.
    expect(readJson<Manifest>(join(ROOT, 'node_modules', 'hono', 'package.json')).version).not.toBe(lowest.hono);
  });

  it('type-checks the embedding example (strict, NodeNext) once the app is an ES module', () => {
    // npm 11's `npm init -y` writes "type": "commonjs" (older npm writes none, which means the same);
    // the example's top-level await and import.meta need "type": "module".
    expect(initialAppManifest.type ?? 'commonjs').toBe('commonjs');
    expect(typecheckAsCommonJs.status).not.toBe(0);
    expect(typecheckAsCommonJs.stdout).toMatch(/CommonJS/);
    expect(typecheckAsModule.stdout + typecheckAsModule.stderr).toBe('');
    expect(typecheckAsModule.status).toBe(0);
  });

  it(
    'runs the compiled embedding example: the package\u2019s routes are the app\u2019s Hono, and serve',
    () => {
      const result = JSON.parse(expectSuccess(node(['run-embed.mjs']), 'node run-embed.mjs').trim()) as {
        status: number;
        body: { id: number };
        routesAreTheAppsHono: boolean;
      };
      expect(result).toMatchObject({ status: 200, body: { id: 42 }, routesAreTheAppsHono: true });
    },
    TIMEOUT,
  );

  it.each(['plain-esm.mjs', 'plain-cjs.cjs'])(
    'runs examples/%s',
    (example) => {
      expect(JSON.parse(expectSuccess(node([example]), example))).toEqual({
        first: 'miss',
        second: 'collapsed',
        value: { key: '7' },
      });
    },
    TIMEOUT,
  );
});

describe('packed tarball', () => {
  const expectEntryPoints = (report: Report): void => {
    expect(report.types).toEqual({
      createGroupProfileCache: 'function',
      createProxyApp: 'function',
      CoalescingCache: 'function',
      OptionError: 'function',
    });
  };
  // Every case at once, so a failure shows which calls still throw something else.
  const expectOptionErrors = (report: Report): void => {
    expect(report.errors).toHaveLength(5);
    const seen = report.errors.map((e) => ({
      call: e.call,
      thrown: e.thrown,
      name: e.name,
      option: e.option,
      isOptionError: e.isOptionError,
      namesUpstream: /\bupstream\b/.test(e.message ?? ''),
    }));
    expect(seen).toEqual(
      report.errors.map((e) => ({
        call: e.call,
        thrown: true,
        name: 'OptionError',
        option: 'upstream',
        isOptionError: true,
        namesUpstream: true,
      })),
    );
  };

  it(
    'import (ESM) loads the entry points from the tarball',
    () => {
      const report = runConsumer('check.mjs');
      expectEntryPoints(report);
      expectOptionErrors(report);
    },
    TIMEOUT,
  );

  it(
    'require (CJS) loads the same module, with the same export names',
    () => {
      const esm = runConsumer('check.mjs');
      const cjs = runConsumer('check.cjs');
      expectEntryPoints(cjs);
      expectOptionErrors(cjs);
      expect(cjs.names).toEqual(esm.names);
    },
    TIMEOUT,
  );
});
