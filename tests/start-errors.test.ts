import { spawnSync } from 'node:child_process';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { createCoalescingCache } from '../src/engine/engine.js';
import { adminRoutes } from '../src/http/admin.js';
import { createProxyApp } from '../src/http/app.js';
import { groupEventRoutes } from '../src/http/events.js';
import { groupProfileRoutes } from '../src/http/routes.js';
import { PushHub } from '../src/push/hub.js';
import { OptionError } from '../src/util/options.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { ROOT, spawnEntry, type Spawned } from './helpers/spawn.js';

/**
 * Start-up errors as a newcomer meets them: every bad setting stops the start with exit 1 and a
 * message naming the setting, with no stack trace and no secret; a start from code that fails
 * leaves nothing running.
 */

let running: Spawned | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  running?.child.kill('SIGKILL');
  running = undefined;
  await redis?.stop();
  redis = undefined;
});

/** `src/cli.ts` with `env`; resolves with its exit code and everything it printed. */
async function cliExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  running = spawnEntry('src/cli.ts', { PORT: '0', HOST: '127.0.0.1', ...env });
  const code = await running.exited;
  return { code, output: running.lines.join('\n') };
}

function expectCleanConfigError(output: string, variable: string, secret?: string): void {
  expect(output).toContain(`group-profile-proxy: invalid ${variable}=`);
  expect(output, 'a stack trace').not.toMatch(/^\s+at /m);
  expect(output).not.toMatch(/ReplyError|Unhandled/);
  if (secret !== undefined) expect(output).not.toContain(secret);
}

describe('REDIS_URL and Redis at start (the CLI)', () => {
  it.each([
    ['a database that is not a number', 'redis://127.0.0.1:6379/abc'],
    ['a fractional database', 'redis://127.0.0.1:6379/1.5'],
    ['options in a query', 'redis://127.0.0.1:6379?db=2'],
  ])('refuses %s before connecting: exit 1 naming REDIS_URL', async (_, url) => {
    const { code, output } = await cliExit({ REDIS_URL: url });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'REDIS_URL');
  });

  it('never echoes the password of a malformed REDIS_URL', async () => {
    const { code, output } = await cliExit({ REDIS_URL: 'redis://:hunter2-secret@127.0.0.1:notaport' });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'REDIS_URL', 'hunter2-secret');
    expect(output).toContain('redis://<redacted>@127.0.0.1:notaport');
  });

  it('reports a password Redis refuses as a configuration error at start (exit 1), not an outage', async () => {
    redis = await startRedisServer(['--requirepass', 'the-right-one']);
    const { code, output } = await cliExit({ REDIS_URL: `redis://:wrong-secret@127.0.0.1:${redis.port}` });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'REDIS_URL', 'wrong-secret');
    expect(output).toMatch(/credentials Redis accepts .*WRONGPASS/);
    expect(output).not.toContain('listening');
  });

  it('reports a missing password the same way (NOAUTH)', async () => {
    redis = await startRedisServer(['--requirepass', 'the-right-one']);
    const { code, output } = await cliExit({ REDIS_URL: redis.url });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'REDIS_URL');
    expect(output).toMatch(/NOAUTH/);
  });

  it('reports a database the server does not have at start (exit 1), instead of serving from database 0', async () => {
    redis = await startRedisServer();
    const { code, output } = await cliExit({ REDIS_URL: `${redis.url}/99` });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'REDIS_URL');
    expect(output).toMatch(/a database the server has .*DB index is out of range/);
  });

  it('starts degraded (not an error) when Redis is only unreachable', async () => {
    redis = await startRedisServer();
    const url = redis.url;
    await redis.stop();
    running = spawnEntry('src/cli.ts', { PORT: '0', HOST: '127.0.0.1', REDIS_URL: url });
    await running.waitForLine(/group-profile-proxy listening/);
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
  });

  it('refuses METRICS_PORT equal to PORT', async () => {
    const { code, output } = await cliExit({ PORT: '18080', METRICS_PORT: '18080' });
    expect(code).toBe(1);
    expectCleanConfigError(output, 'METRICS_PORT');
  });
});

/**
 * startSidecar from code in a process of its own: the process must end by itself once the failed
 * start has been reported, so anything the start left running (the mock backend, a Redis client,
 * a listener) shows as a process that does not exit.
 */
function startFromCode(options: string): { status: number | null; report: Record<string, unknown> } {
  const script = `
    import { startSidecar } from './src/index.ts';
    try {
      const sidecar = await startSidecar(${options});
      console.log(JSON.stringify({ started: true }));
      await sidecar.close();
    } catch (e) {
      console.log(JSON.stringify({ name: e.name, code: e.code, option: e.option, variable: e.variable, message: e.message }));
    }`;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 20_000,
  });
  const last = result.stdout.trim().split('\n').at(-1) ?? '{}';
  return { status: result.status, report: JSON.parse(last) as Record<string, unknown> };
}

describe('startSidecar from code', () => {
  it.each([
    ['a negative TTL', "{ ttlMs: -5, logLevel: 'silent' }", 'ttlMs'],
    ['a port out of range (not a RangeError)', "{ port: 99999, logLevel: 'silent' }", 'port'],
    ['a number given as a string', "{ port: '8080', logLevel: 'silent' }", 'port'],
    ['an unknown (misspelt) option', "{ tllMs: 5, logLevel: 'silent' }", 'tllMs'],
  ])('rejects %s with an OptionError naming it, before starting anything', (_, options, option) => {
    const { status, report } = startFromCode(options);
    expect(status, 'the process did not exit by itself: the failed start left something running').toBe(0);
    expect(report).toMatchObject({ name: 'OptionError', code: 'ERR_INVALID_OPTION', option });
  });

  it('stops what it started when a later step fails (the port is taken)', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const { status, report } = startFromCode(`{ port: ${port}, host: '127.0.0.1', logLevel: 'silent' }`);
      expect(status, 'the process did not exit by itself: the failed start left something running').toBe(0);
      expect(report).toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      taken.close();
    }
  });

  it('stops the mock backend and the Redis client when Redis refuses the credentials', async () => {
    redis = await startRedisServer(['--requirepass', 'the-right-one']);
    const { status, report } = startFromCode(
      `{ port: 0, host: '127.0.0.1', logLevel: 'silent', redisUrl: 'redis://:wrong-secret@127.0.0.1:${redis.port}' }`,
    );
    expect(status, 'the process did not exit by itself: the failed start left something running').toBe(0);
    expect(report).toMatchObject({ name: 'ConfigError', variable: 'REDIS_URL' });
    expect(String(report.message)).not.toContain('wrong-secret');
  });
});

describe('route factories from plain JavaScript', () => {
  const engine = createCoalescingCache<unknown>({ load: async () => ({ id: 1 }) });

  it('groupEventRoutes({ hub }) gives parseId and cacheName their defaults and serves', async () => {
    const hub = new PushHub({ engine });
    try {
      const app = new Hono().route('/', groupEventRoutes({ hub }));
      const invalid = await app.request('/groups/042/events');
      expect(invalid.status).toBe(400);
      expect(((await invalid.json()) as { error: { code: string } }).error.code).toBe('INVALID_GROUP_ID');
    } finally {
      hub.close();
    }
  });

  it('checks its options when it is made, naming the bad one', () => {
    const hub = new PushHub({ engine });
    const fromJs = groupEventRoutes as (options: unknown) => Hono;
    try {
      expect(() => fromJs({})).toThrow(expect.objectContaining({ name: 'OptionError', option: 'hub' }));
      expect(() => fromJs({ hub, parseId: 'digits' })).toThrow(expect.objectContaining({ option: 'parseId' }));
      expect(() => fromJs({ hub, cacheName: 'two words' })).toThrow(expect.objectContaining({ option: 'cacheName' }));
      expect(() => fromJs({ hub, maxGroup: 5 })).toThrow(expect.objectContaining({ option: 'maxGroup' }));
    } finally {
      hub.close();
    }
  });

  it('adminRoutes needs only engine and token; unknown options are refused', async () => {
    const token = 'a-long-enough-admin-token';
    const app = new Hono().route('/admin', adminRoutes({ engine, token }));
    const bad = await app.request('/admin/invalidate', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ids: ['042'] }),
    });
    expect(bad.status).toBe(400);
    const fromJs = adminRoutes as (options: unknown) => Hono;
    expect(() => fromJs({ engine, token, tokn: token })).toThrow(OptionError);
    expect(() => fromJs({ engine: {}, token })).toThrow(expect.objectContaining({ option: 'engine' }));
  });

  it('createProxyApp and groupProfileRoutes refuse unknown options instead of ignoring them', () => {
    const proxyApp = createProxyApp as (options: unknown) => Hono;
    const routes = groupProfileRoutes as (options: unknown) => Hono;
    expect(() => proxyApp({ engine, maxGroupID: 5 })).toThrow(expect.objectContaining({ option: 'maxGroupID' }));
    expect(() => routes({ engine, cachename: 'x' })).toThrow(expect.objectContaining({ option: 'cachename' }));
    expect(() => proxyApp({ engine })).not.toThrow();
  });
});

describe('library options', () => {
  it('the engine (and so createGroupProfileCache) refuses an option it does not know', async () => {
    const { createGroupProfileCache } = await import('../src/group-profile.js');
    const make = createCoalescingCache as (options: unknown) => unknown;
    expect(() => make({ load: async () => null, ttlMS: 5 })).toThrow(expect.objectContaining({ option: 'ttlMS' }));
    const fromJs = createGroupProfileCache as (options: unknown) => unknown;
    expect(() => fromJs({ upstream: { url: 'http://127.0.0.1:1' }, staleTTLMs: 5 })).toThrow(
      expect.objectContaining({ name: 'OptionError', option: 'staleTTLMs' }),
    );
  });
});
