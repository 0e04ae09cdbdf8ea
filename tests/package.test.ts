import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/spawn.js';

/**
 * The published package as a consumer gets it: `npm pack` of the built repo (dist/ must exist; `npm test`
 * builds first), unpacked into a fresh project outside the repository, then loaded by plain-JS child
 * processes through `import` and `require`. The tarball is unpacked rather than `npm install`ed so the
 * test needs no registry: each declared dependency is linked from the repo's node_modules (installed
 * from the same lockfile), so an undeclared runtime dependency still fails to resolve.
 */

const TIMEOUT = 60_000;

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

let temp: string;
let project: string;

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', timeout: 30_000, shell: process.platform === 'win32' });
}

function runConsumer(file: string): Report {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // nothing from the test runner's loaders may help the consumer resolve the package
  const result = spawnSync(process.execPath, [file], { cwd: project, env, encoding: 'utf8', timeout: 20_000 });
  // Some Node 20/22 releases print an ExperimentalWarning for require() of an ES module: stderr is shown on failure, never asserted empty.
  expect(
    result.status,
    `node ${file} exited ${result.status}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`,
  ).toBe(0);
  const report = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Report;
  // From the unpacked tarball, never the repository (a self-reference or a stray link would hide a packing mistake).
  expect(report.resolved.startsWith(join(project, 'node_modules', 'group-profile-proxy') + sep)).toBe(true);
  return report;
}

beforeAll(() => {
  temp = realpathSync(mkdtempSync(join(tmpdir(), 'gpp-pack-')));
  const [packed] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', temp], ROOT)) as {
    filename: string;
  }[];
  const tarball = join(temp, packed!.filename);

  project = join(temp, 'consumer');
  const installed = join(project, 'node_modules', 'group-profile-proxy');
  mkdirSync(installed, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);

  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    const link = join(project, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), link, 'junction');
  }
  writeFileSync(join(project, 'check.mjs'), ESM);
  writeFileSync(join(project, 'check.cjs'), CJS);
}, TIMEOUT);

afterAll(() => {
  if (temp !== undefined) rmSync(temp, { recursive: true, force: true });
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
