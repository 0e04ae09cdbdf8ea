import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp as createEmbeddedApp } from '../examples/embed-hono.js';
import { createUserCache, type User } from '../examples/custom-loader.js';
import { createApp as createTenantApp } from '../examples/custom-id-rule.js';
import { startMockBackend, type RunningMockBackend } from '../src/index.js';
import { ROOT } from './helpers/spawn.js';

let backend: RunningMockBackend | undefined;
afterEach(async () => {
  await backend?.close();
  backend = undefined;
});

describe('examples', () => {
  it('embed-hono: serves profiles under the host app, coalesced and cached', async () => {
    backend = await startMockBackend({ latencyMs: 20, latencyJitterMs: 0 });
    const { app, profiles } = createEmbeddedApp(backend.url);
    try {
      expect(await (await app.request('/')).text()).toBe('my app');
      const responses = await Promise.all(Array.from({ length: 50 }, () => app.request('/api/groups/42')));
      expect(responses.every((r) => r.status === 200)).toBe(true);
      expect(backend.backend.stats().calls).toBe(1);
      expect((await app.request('/api/groups/042')).status).toBe(400);
    } finally {
      await profiles.close();
    }
  });

  it('custom-loader: typed numeric keys, one query for 100 concurrent lookups, negative caching', async () => {
    const queries: number[] = [];
    const users = createUserCache(new Map<number, User>([[1, { id: 1, name: 'alice' }]]), queries);
    const values = await Promise.all(Array.from({ length: 100 }, () => users.value(1)));
    expect(values.every((v) => v?.name === 'alice')).toBe(true);
    expect(await users.value(2)).toBeUndefined();
    expect(await users.value(2)).toBeUndefined();
    expect(queries).toEqual([1, 2]);
    await users.close();
  });

  it('custom-id-rule: the deployment rule decides what reaches the loader', async () => {
    const seen: string[] = [];
    const app = createTenantApp(async (key) => {
      seen.push(key);
      return { key };
    });
    expect((await app.request('/groups/12345')).status).toBe(200);
    expect((await app.request('/groups/1234')).status).toBe(400);
    expect((await app.request('/groups/1234567890123')).status).toBe(400);
    expect(seen).toEqual(['12345']);
  });

  it('plain-esm.mjs: works from plain JavaScript through the package exports', () => {
    const output = execFileSync(process.execPath, ['examples/plain-esm.mjs'], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual({ first: 'miss', second: 'collapsed', value: { key: '7' } });
  });

  it('plain-cjs.cjs: works from CommonJS, through require() of the package', () => {
    const output = execFileSync(process.execPath, ['examples/plain-cjs.cjs'], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual({ first: 'miss', second: 'collapsed', value: { key: '7' } });
  });
});

describe('package', () => {
  it('has no side effects on import: nothing listens, no timer keeps the process alive', () => {
    const script = "const m = await import('group-profile-proxy'); console.log(Object.keys(m).length)";
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(Number(output)).toBeGreaterThan(20);
  });

  it('exports the documented entry points with types', () => {
    const script = [
      "const m = await import('group-profile-proxy');",
      "const names = ['CoalescingCache','createKeyedCache','createGroupProfileCache','groupProfileRoutes','createProxyApp','startSidecar','RedisTier','ProxyMetrics','NOT_FOUND','ProxyError','PushHub','groupEventRoutes','InMemoryTier'];",
      'console.log(JSON.stringify(names.filter((n) => !(n in m))));',
    ].join('\n');
    expect(
      JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' }),
      ),
    ).toEqual([]);
  });
});
