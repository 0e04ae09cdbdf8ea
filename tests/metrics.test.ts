import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ProxyMetrics,
  createGroupProfileCache,
  createProxyApp,
  startMockBackend,
  startSidecar,
  type GroupProfileCache,
  type RunningMockBackend,
} from '../src/index.js';
import { parseArgs, helpText, flagOf } from '../src/server/cli-args.js';
import { SETTINGS } from '../src/server/config.js';
import { spawnEntry } from './helpers/spawn.js';

let backend: RunningMockBackend | undefined;
let profiles: GroupProfileCache | undefined;
afterEach(async () => {
  await profiles?.close();
  await backend?.close();
  profiles = backend = undefined;
});

async function setup(backendOptions = {}) {
  backend = await startMockBackend({ latencyMs: 100, latencyJitterMs: 0, ...backendOptions });
  let cache: GroupProfileCache | undefined;
  const metrics = new ProxyMetrics(
    { processMetrics: false },
    {
      engine: () => cache!.engine.stats(),
      breaker: () => cache!.guard.breakerState,
      upstream: () => cache!.guard.stats(),
    },
  );
  cache = profiles = createGroupProfileCache({ upstream: { url: backend.url }, metrics });
  const app = createProxyApp({ engine: cache.engine, metrics, metricsRoute: true });
  return { app, metrics };
}

function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (line === undefined) throw new Error(`no sample ${name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics', () => {
  it('after a burst of 1000 requests on one id, the waiters histogram shows 1000 waiters on one origin call', async () => {
    const { app } = await setup();
    const responses = await Promise.all(Array.from({ length: 1000 }, () => app.request('/groups/42')));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const response = await app.request('/metrics');
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(sample(text, 'gpp_coalesced_waiters_count')).toBe(1);
    expect(sample(text, 'gpp_coalesced_waiters_sum')).toBe(1000);
    expect(text).toContain('gpp_coalesced_waiters_bucket{le="500"} 0');
    expect(text).toContain('gpp_coalesced_waiters_bucket{le="1000"} 1');
    expect(text).toContain('gpp_origin_calls_total{kind="single",outcome="ok"} 1');
    expect(text).toContain('gpp_loads_total{source="origin"} 1');
    expect(text).toMatch(/gpp_http_requests_total\{route="\/groups\/:id",status="200",cache="miss"\} 1\n/);
    expect(text).toMatch(/gpp_http_requests_total\{route="\/groups\/:id",status="200",cache="collapsed"\} 999\n/);
    expect(text).toContain('gpp_breaker_state 0');
    expect(text).toContain('gpp_l1_entries 1');
    expect(text).toContain('gpp_l2_up -1');
  });

  it('counts L1 lookups per id for a multi-get, as for single requests', async () => {
    const { app, metrics } = await setup({ latencyMs: 0 });
    const l1 = async (result: string): Promise<number> => {
      const line = (await metrics.registry.metrics())
        .split('\n')
        .find((l) => l.startsWith(`gpp_cache_lookups_total{tier="l1",result="${result}"}`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    expect((await app.request('/groups?ids=1,2,3')).status).toBe(200);
    expect(await l1('miss')).toBe(3);
    expect(await l1('hit')).toBe(0);
    expect((await app.request('/groups?ids=1,2,3,4')).status).toBe(200);
    expect(await l1('hit')).toBe(3);
    expect(await l1('miss')).toBe(4);
    await app.request('/groups/1');
    expect(await l1('hit')).toBe(4);
  });

  it('counts hits, invalid ids, upstream errors and breaker transitions', async () => {
    const { app, metrics } = await setup({ latencyMs: 0 });
    await app.request('/groups/1');
    await app.request('/groups/1');
    await app.request('/groups/01');
    backend!.backend.setMode('error');
    await app.request('/groups/2');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/cache="hit"\} 1\n/);
    expect(text).toMatch(/status="400",cache="none"\} 1\n/);
    expect(text).toMatch(/status="502",cache="none"\} 1\n/);
    expect(text).toContain('gpp_origin_calls_total{kind="single",outcome="error"} 1');
  });

  it('counts fast-path hits of the sidecar at scrape time', async () => {
    backend = await startMockBackend({ latencyMs: 0 });
    const proxy = await startSidecar({ port: 0, host: '127.0.0.1', logLevel: 'silent', upstreamUrl: backend.url });
    try {
      for (let i = 0; i < 11; i++) await (await fetch(`${proxy.url}/groups/5`)).arrayBuffer();
      const etag = (await fetch(`${proxy.url}/groups/5`)).headers.get('etag')!;
      expect((await fetch(`${proxy.url}/groups/5`, { headers: { 'if-none-match': etag } })).status).toBe(304);
      const text = await (await fetch(`${proxy.url}/metrics`)).text();
      expect(text).toMatch(/gpp_http_requests_total\{route="\/groups\/:id",status="200",cache="hit"\} 11\n/);
      expect(text).toMatch(/gpp_http_requests_total\{route="\/groups\/:id",status="304",cache="hit"\} 1\n/);
      expect(text).toMatch(/gpp_http_requests_total\{route="\/groups\/:id",status="200",cache="miss"\} 1\n/);
      expect(text).toContain('gpp_cache_lookups_total{tier="l1",result="hit"} 12');
      expect(text).toContain('gpp_http_request_duration_seconds_count{route="/groups/:id"} 13');
      // A second scrape does not count them again.
      expect(await (await fetch(`${proxy.url}/metrics`)).text()).toContain(
        'gpp_cache_lookups_total{tier="l1",result="hit"} 12',
      );
    } finally {
      await proxy.close();
    }
  });

  it('registers on an injected registry only, never the global one', async () => {
    const { Registry, register } = await import('prom-client');
    const registry = new Registry();
    new ProxyMetrics({ registry, prefix: 'mine_', processMetrics: false });
    expect((await registry.getMetricsAsJSON()).every((m) => m.name.startsWith('mine_'))).toBe(true);
    expect((await register.getMetricsAsJSON()).some((m) => m.name.startsWith('mine_'))).toBe(false);
  });

  it("exports prom-client's process metrics, without the per-GC histogram unless asked for", async () => {
    const { Registry, collectDefaultMetrics } = await import('prom-client');
    const names = async (registry: InstanceType<typeof Registry>) =>
      (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
    const reference = new Registry();
    collectDefaultMetrics({ register: reference, prefix: 'gpp_' });
    const withoutGc = new ProxyMetrics({ registry: new Registry() });
    const withGc = new ProxyMetrics({ registry: new Registry(), gcMetrics: true });
    const own = await names(new ProxyMetrics({ registry: new Registry(), processMetrics: false }).registry);
    const processNames = async (metrics: ProxyMetrics) =>
      (await names(metrics.registry)).filter((name) => !own.includes(name));
    expect(await processNames(withGc)).toEqual(await names(reference));
    expect(await processNames(withoutGc)).toEqual(
      (await names(reference)).filter((name) => name !== 'gpp_nodejs_gc_duration_seconds'),
    );
    expect(await processNames(withoutGc)).toContain('gpp_nodejs_eventloop_lag_seconds');
  });

  it('counts process CPU from one reading per scrape, user + system = total', async () => {
    const metrics = new ProxyMetrics({ prefix: 'cpu_' });
    const until = Date.now() + 30;
    while (Date.now() < until); // some CPU to count
    const values = Object.fromEntries(
      (await metrics.registry.getMetricsAsJSON())
        .filter((m) => m.name.startsWith('cpu_process_cpu'))
        .map((m) => [m.name, m.values[0]!.value]),
    );
    expect(values.cpu_process_cpu_user_seconds_total).toBeGreaterThan(0);
    expect(values.cpu_process_cpu_seconds_total).toBeCloseTo(
      values.cpu_process_cpu_user_seconds_total! + values.cpu_process_cpu_system_seconds_total!,
      9,
    );
  });

  it('does not load prom-client’s index or @opentelemetry/api (built dist, fresh process)', () => {
    const script = `
      import { createRequire } from 'node:module';
      const { ProxyMetrics } = await import('./dist/metrics/metrics.js');
      await new ProxyMetrics({ gcMetrics: true }).registry.metrics();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({ otel: loaded.filter((f) => f.includes('@opentelemetry')).length, index: loaded.filter((f) => f.endsWith('prom-client/index.js')).length, lib: loaded.filter((f) => f.includes('prom-client/lib/')).length }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: new URL('..', import.meta.url),
        encoding: 'utf8',
      }),
    ) as Record<string, number>;
    expect(out).toEqual({ otel: 0, index: 0, lib: expect.any(Number) });
    expect(out.lib).toBeGreaterThan(10);
  });

  it('lists exactly the exported metrics in the metrics table of docs/operations.md', async () => {
    const metrics = new ProxyMetrics({ processMetrics: false });
    const exported = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).sort();
    const doc = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
    const start = doc.indexOf('<!-- metrics-table:start -->');
    const end = doc.indexOf('<!-- metrics-table:end -->');
    expect(start, 'docs/operations.md has the metrics-table markers').toBeGreaterThan(-1);
    expect(end).toBeGreaterThan(start);
    const table = doc.slice(start, end);
    const documented = [...table.matchAll(/^\| `(gpp_[a-z0-9_]+)`/gm)].map((m) => m[1]!).sort();
    expect(documented).toEqual(exported);
  });
});

describe('CLI flags mirror the configuration schema', () => {
  it('maps every setting to a flag and --help lists them all', () => {
    const help = helpText();
    for (const setting of Object.values(SETTINGS)) {
      expect(help).toContain(flagOf(setting.env));
      expect(parseArgs([flagOf(setting.env), 'x'])).toEqual({ help: false, run: 'serve', env: { [setting.env]: 'x' } });
    }
    expect(parseArgs(['--port=9000', '--ttl-ms', '5000'])).toEqual({
      help: false,
      run: 'serve',
      env: { PORT: '9000', TTL_MS: '5000' },
    });
    expect(parseArgs(['serve', '--port=9000'])).toEqual({ help: false, run: 'serve', env: { PORT: '9000' } });
    expect(parseArgs(['--help'])).toEqual({ help: true });
  });

  it('parses the feed commands: invalidate with ids (and --deleted) among flags, feed-keys', () => {
    expect(parseArgs(['invalidate', '42', '--redis-url', 'redis://r:6379', '43', '--deleted'])).toEqual({
      help: false,
      run: 'invalidate',
      env: { REDIS_URL: 'redis://r:6379' },
      ids: ['42', '43'],
      kind: 'deleted',
    });
    expect(parseArgs(['feed-keys', '--feed-shards=3'])).toEqual({
      help: false,
      run: 'feed-keys',
      env: { FEED_SHARDS: '3' },
    });
    expect(() => parseArgs(['invalidate'])).toThrow('invalidate needs at least one group id');
    expect(() => parseArgs(['42'])).toThrow('unknown option 42');
    expect(helpText()).toContain('group-profile-proxy invalidate <group id>...');
  });

  it('rejects unknown flags and missing values', () => {
    expect(() => parseArgs(['--prot', '1'])).toThrow('unknown option --prot; see --help');
    expect(() => parseArgs(['--port'])).toThrow('option --port needs a value');
  });

  it('starts from flags, which win over the environment, and prints --help', async () => {
    const proxy = spawnEntry('src/cli.ts', { PORT: 'not-a-port', HOST: '0.0.0.0' }, [
      '--port',
      '0',
      '--host=127.0.0.1',
      '--ttl-ms',
      '1234',
    ]);
    try {
      const listening = JSON.parse(await proxy.waitForLine(/listening/)) as { url: string; config: { ttlMs: number } };
      expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(listening.config.ttlMs).toBe(1234);
      expect((await fetch(`${listening.url}/healthz`)).status).toBe(200);
    } finally {
      proxy.child.kill('SIGKILL');
    }
    const help = spawnEntry('src/cli.ts', {}, ['--help']);
    expect(await help.exited).toBe(0);
    expect(help.lines.join('\n')).toContain('--upstream-url (UPSTREAM_URL, default unset)');
  });
});
