import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startFleet } from './helpers/fleet.js';
import { ROOT, spawnEntry, spawnNode, type Spawned } from './helpers/spawn.js';
import { until } from './helpers/until.js';

let running: Spawned | undefined;
afterEach(() => {
  running?.child.kill('SIGKILL');
  running = undefined;
});

describe('npm start (src/cli.ts)', () => {
  it('serves from the built-in mock backend when UPSTREAM_URL is unset, says so first, and exits 0 on SIGTERM', async () => {
    running = spawnEntry('src/cli.ts', { PORT: '0', HOST: '127.0.0.1' });
    const listening = JSON.parse(await running.waitForLine(/listening/)) as { url: string };
    const first = JSON.parse(running.lines[0]!) as { msg: string };
    expect(first.msg).toMatch(/UPSTREAM_URL is not set: serving from the built-in mock backend/);

    const response = await fetch(`${listening.url}/groups/42`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ id: 42 });

    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
  });

  it.each([
    ['PORT', 'eighty', /invalid PORT="eighty": expected an integer in \[0, 65535\]/],
    ['TTL_JITTER', '2', /invalid TTL_JITTER="2": expected a number in \[0, 0.5\]/],
    ['UPSTREAM_URL', 'ftp://x', /invalid UPSTREAM_URL="ftp:\/\/x": expected a http: or https: URL/],
    ['LOG_LEVEL', 'loud', /invalid LOG_LEVEL="loud": expected one of/],
  ])('refuses to start with an invalid %s and names it', async (variable, value, message) => {
    running = spawnEntry('src/cli.ts', { PORT: '0', [variable]: value });
    expect(await running.exited).toBe(1);
    expect(running.lines.join('\n')).toMatch(message);
  });
});

/** The compiled CLI as `npm start` and the image run it, with only `env` (and PATH). */
function startBuilt(env: Record<string, string>, args: string[] = []): Spawned {
  expect(existsSync(join(ROOT, 'dist/cli.js')), 'dist/ is missing: run `npm run build` first').toBe(true);
  running = spawnNode(['dist/cli.js', ...args], env);
  return running;
}

/** `GET /groups/42` answers a profile, then SIGTERM ends the process with 0. */
async function servesGroup42ThenStops(proxy: Spawned, url: string): Promise<void> {
  const response = await fetch(`${url}/groups/42`, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  expect(await response.json()).toMatchObject({ id: 42 });
  proxy.child.kill('SIGTERM');
  expect(await proxy.exited).toBe(0);
}

const MOCK_LOG = /(UPSTREAM_URL is not set|MOCK_BACKEND=on): serving from the built-in mock backend/;

describe('the built-in mock backend and NODE_ENV=production (dist/cli.js)', () => {
  it('with no configuration at all still serves the built-in mock and says so', async () => {
    // Flags only, so the environment holds nothing but PATH.
    const proxy = startBuilt({}, ['--port', '0', '--host', '127.0.0.1']);
    const listening = JSON.parse(await proxy.waitForLine(/listening/)) as { url: string; upstream: string };
    expect(proxy.lines.join('\n')).toMatch(MOCK_LOG);
    expect(listening.upstream).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await servesGroup42ThenStops(proxy, listening.url);
  });

  it.each([
    ['NODE_ENV=production', { NODE_ENV: 'production' }, []],
    ['NODE_ENV=production MOCK_BACKEND=auto', { NODE_ENV: 'production', MOCK_BACKEND: 'auto' }, []],
    ['NODE_ENV=production --mock-backend auto', { NODE_ENV: 'production' }, ['--mock-backend', 'auto']],
  ])(
    'with %s and no UPSTREAM_URL refuses to start, exit 1, naming UPSTREAM_URL and MOCK_BACKEND=on',
    async (_, env: Record<string, string>, args: string[]) => {
      const proxy = startBuilt({ PORT: '0', HOST: '127.0.0.1', ...env }, args);
      expect(await proxy.exited).toBe(1);
      const output = proxy.lines.join('\n');
      expect(output).toMatch(
        /^group-profile-proxy: invalid UPSTREAM_URL="": expected the URL of the group-profile service when NODE_ENV=production/m,
      );
      expect(output).toMatch(/set MOCK_BACKEND=on/);
      // Refused before anything started: no mock backend, no listener.
      expect(output).not.toMatch(/built-in mock backend at|listening/);
    },
  );

  it.each([
    ['MOCK_BACKEND=on', { MOCK_BACKEND: 'on' }, []],
    ['--mock-backend on', {}, ['--mock-backend', 'on']],
  ])(
    'with NODE_ENV=production and %s serves the built-in mock and logs it',
    async (_, env: Record<string, string>, args: string[]) => {
      const proxy = startBuilt({ NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', ...env }, args);
      const listening = JSON.parse(await proxy.waitForLine(/listening/)) as {
        url: string;
        config: { mockBackend: string; nodeEnv: string };
      };
      expect(listening.config).toMatchObject({ mockBackend: 'on', nodeEnv: 'production' });
      const announced = proxy.lines.find((line) => MOCK_LOG.test(line));
      expect(announced, proxy.lines.join('\n')).toBeDefined();
      expect(JSON.parse(announced!)).toMatchObject({ level: 30 });
      await servesGroup42ThenStops(proxy, listening.url);
    },
  );

  it.each([
    ['without NODE_ENV', {}],
    ['with NODE_ENV=production', { NODE_ENV: 'production' }],
  ])('refuses MOCK_BACKEND=on together with UPSTREAM_URL %s', async (_, env: Record<string, string>) => {
    const proxy = startBuilt({
      PORT: '0',
      HOST: '127.0.0.1',
      MOCK_BACKEND: 'on',
      UPSTREAM_URL: 'http://127.0.0.1:9',
      ...env,
    });
    expect(await proxy.exited).toBe(1);
    const output = proxy.lines.join('\n');
    expect(output).toMatch(
      /^group-profile-proxy: invalid MOCK_BACKEND="on": expected off or auto when UPSTREAM_URL is set/m,
    );
    expect(output).not.toMatch(/listening/);
  });

  it('refuses MOCK_BACKEND=off without UPSTREAM_URL even outside production', async () => {
    const proxy = startBuilt({ PORT: '0', HOST: '127.0.0.1', MOCK_BACKEND: 'off' });
    expect(await proxy.exited).toBe(1);
    expect(proxy.lines.join('\n')).toMatch(
      /invalid UPSTREAM_URL="": expected the URL of the group-profile service \(MOCK_BACKEND=off\)/,
    );
  });

  it('with NODE_ENV=production and UPSTREAM_URL starts without the mock', async () => {
    const proxy = startBuilt({
      NODE_ENV: 'production',
      PORT: '0',
      HOST: '127.0.0.1',
      UPSTREAM_URL: 'http://127.0.0.1:9',
    });
    const listening = JSON.parse(await proxy.waitForLine(/listening/)) as { url: string; upstream: string };
    expect(listening.upstream).toBe('http://127.0.0.1:9');
    expect(proxy.lines.join('\n')).not.toMatch(/built-in mock backend/);
    const health = await fetch(`${listening.url}/healthz`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).toBe(0);
  });
});

describe('ADDRESS_FILE (dist/cli.js)', () => {
  it('that cannot be written stops the start with exit 1 and a message naming ADDRESS_FILE', async () => {
    const missing = join(tmpdir(), `gpp-no-such-directory-${process.pid}`, 'url');
    const proxy = startBuilt({ PORT: '0', HOST: '127.0.0.1', ADDRESS_FILE: missing });
    expect(await proxy.exited).toBe(1);
    const message = proxy.lines.find((line) => line.startsWith('group-profile-proxy: '));
    expect(message).toMatch(/^group-profile-proxy: cannot write ADDRESS_FILE=".*no-such-directory.*url": ENOENT/);
    expect(existsSync(missing)).toBe(false);
  });
});

describe('group-profile-proxy --version (dist/cli.js)', () => {
  it("prints the package's version and exits 0", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) {
      const command = startBuilt({}, [flag]);
      expect(await command.exited).toBe(0);
      expect(command.lines).toEqual([`group-profile-proxy ${version}`]);
    }
  });
});

describe('group-profile-proxy invalidate / feed-keys (dist/cli.js)', () => {
  it('appends a change the proxies apply, exits 0 once Redis acknowledged it, and prints where it went', async () => {
    const redisUrl = inject('redisUrl');
    const fleet = await startFleet(1, { url: redisUrl }, { backend: { latencyMs: 0 } });
    try {
      const { engine } = fleet.instances[0]!;
      await engine.get('42');
      await engine.get('43');
      const command = startBuilt({ REDIS_URL: redisUrl, REDIS_PREFIX: fleet.prefix }, [
        'invalidate',
        '42',
        '43',
        '--change-version',
        'v7',
      ]);
      expect(await command.exited).toBe(0);
      const printed = JSON.parse(command.lines[0]!) as {
        appended: { shard: number; position: string; ids: string[]; kind: string; version?: string }[];
      };
      expect(printed.appended).toEqual([
        { shard: 0, position: expect.stringMatching(/^\d+-\d+$/), ids: ['42', '43'], kind: 'changed', version: 'v7' },
      ]);
      await until(
        () => engine.peek('42') === undefined && engine.peek('43') === undefined,
        'the change at the proxy',
        10_000,
      );

      const keys = startBuilt({ REDIS_URL: redisUrl, REDIS_PREFIX: fleet.prefix }, ['feed-keys']);
      expect(await keys.exited).toBe(0);
      expect(keys.lines).toEqual([`0\t${fleet.instances[0]!.tier.feedKeys[0]!.changes}`]);
    } finally {
      await fleet.close();
    }
  });

  it.each([
    [
      'no Redis configured',
      {},
      ['invalidate', '42'],
      2,
      /the change feed lives in Redis: set REDIS_URL or REDIS_CLUSTER_NODES/,
    ],
    ['a malformed id', { REDIS_URL: 'redis://127.0.0.1:1' }, ['invalidate', '042'], 2, /invalid group id "042"/],
    // Usage errors exit 2, whichever part of the command line is wrong.
    ['no ids', { REDIS_URL: 'redis://127.0.0.1:1' }, ['invalidate'], 2, /invalidate needs at least one group id/],
    ['an unknown flag', {}, ['--prot', '80'], 2, /unknown option --prot; see --help/],
    [
      'an empty --change-version',
      { REDIS_URL: 'redis://127.0.0.1:1' },
      ['invalidate', '42', '--change-version='],
      2,
      /--change-version needs a value/,
    ],
    [
      'Redis unreachable',
      { REDIS_URL: 'redis://127.0.0.1:1' },
      ['invalidate', '42'],
      1,
      /Redis did not acknowledge the change/,
    ],
  ])(
    'fails with %s, saying why',
    async (_case, env, args, code, message) => {
      const command = startBuilt(env, args);
      expect(await command.exited).toBe(code);
      expect(command.lines.join('\n')).toMatch(message);
    },
    20_000,
  );
});
