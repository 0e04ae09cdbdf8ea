import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, it, expect, vi } from 'vitest';
import { createMockBackend, type MockBackendOptions, type MockStats } from '../src/mock-backend/app.js';
import { MOCK_MODES } from '../src/mock-backend/modes.js';
import { generateProfile, type GroupProfile } from '../src/mock-backend/profiles.js';
import { startMockBackend } from '../src/mock-backend/server.js';
import { Slots } from '../src/mock-backend/slots.js';
import { OptionError } from '../src/util/options.js';

// No artificial latency: tests assert behaviour and counts, never speed.
const FAST = { latencyMs: 0, latencyJitterMs: 0 } as const;

function fastBackend(options: Partial<MockBackendOptions> = {}) {
  return createMockBackend({ ...FAST, ...options });
}

type Backend = ReturnType<typeof createMockBackend>;

async function getJson(backend: Backend, path: string): Promise<{ status: number; body: unknown }> {
  const response = await backend.app.request(path);
  return { status: response.status, body: await response.json() };
}

function post(backend: Backend, path: string, body?: unknown): Promise<Response> {
  return Promise.resolve(
    backend.app.request(path, {
      method: 'POST',
      ...(body === undefined
        ? {}
        : {
            body: typeof body === 'string' ? body : JSON.stringify(body),
            headers: { 'content-type': 'application/json' },
          }),
    }),
  );
}

function byteSize(profile: GroupProfile): number {
  return Buffer.byteLength(JSON.stringify(profile));
}

/** Lets the event loop turn until `condition` holds; the cap only guards against a hung test. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition()).toBe(true);
}

describe('generateProfile', () => {
  it('is deterministic: same id and revision give byte-identical JSON', () => {
    for (const id of [1, 42, 123_456, 99_999_999, 9_007_199_254_740_991]) {
      expect(JSON.stringify(generateProfile(id))).toBe(JSON.stringify(generateProfile(id, 0)));
      expect(JSON.stringify(generateProfile(id, 3))).toBe(JSON.stringify(generateProfile(id, 3)));
    }
    expect(JSON.stringify(generateProfile(1))).not.toBe(JSON.stringify(generateProfile(2)));
  });

  it('stays within 1–2 KB for many ids and revisions', () => {
    const ids = [
      ...Array.from({ length: 3000 }, (_, i) => i + 1),
      ...Array.from({ length: 500 }, (_, i) => 100_000_000 - i),
      ...Array.from({ length: 200 }, (_, i) => 9_007_199_254_740_991 - i * 7919),
    ];
    for (const id of ids) {
      for (const revision of [0, 1, 17]) {
        const size = byteSize(generateProfile(id, revision));
        expect(size, `id ${id} revision ${revision}`).toBeGreaterThanOrEqual(1024);
        expect(size, `id ${id} revision ${revision}`).toBeLessThanOrEqual(2048);
      }
    }
  });

  it('has the documented shape', () => {
    for (let id = 1; id <= 300; id++) {
      const profile = generateProfile(id);
      expect(profile.id).toBe(id);
      expect(profile.revision).toBe(0);
      expect(profile.name.length).toBeGreaterThan(0);
      expect(Number.isInteger(profile.owner.uin)).toBe(true);
      expect(profile.admins.length).toBeLessThanOrEqual(10);
      expect([200, 500, 1000, 2000, 3000]).toContain(profile.memberLimit);
      expect(profile.memberCount).toBeGreaterThan(0);
      expect(profile.memberCount).toBeLessThanOrEqual(profile.memberLimit);
      expect(profile.tags.length).toBeGreaterThanOrEqual(2);
      expect(profile.notice.length).toBeGreaterThan(0);
      expect(profile.avatarUrl).toMatch(/^https:\/\//);
      expect(new Date(profile.createdAt).toISOString()).toBe(profile.createdAt);
      expect(Date.parse(profile.updatedAt)).toBeGreaterThanOrEqual(Date.parse(profile.createdAt));
    }
  });

  it('moves updatedAt forward with the revision and keeps the identity', () => {
    const before = generateProfile(77, 0);
    const after = generateProfile(77, 1);
    expect(after.revision).toBe(1);
    expect(Date.parse(after.updatedAt)).toBeGreaterThan(Date.parse(before.updatedAt));
    expect(after.name).toBe(before.name);
    expect(after.owner).toEqual(before.owner);
    expect(after.createdAt).toBe(before.createdAt);
  });
});

describe('GET /groups/:id', () => {
  it('answers 200 with the profile as application/json', async () => {
    const backend = fastBackend();
    const response = await backend.app.request('/groups/12345');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.text()).toBe(JSON.stringify(generateProfile(12345)));
  });

  it('answers 404 GROUP_NOT_FOUND for missingEvery, missingIds and ids above maxId', async () => {
    const backend = fastBackend({ missingEvery: 10, missingIds: [7], maxId: 1000 });
    for (const id of [10, 20, 990, 7, 1001, 9_999_999_999]) {
      const { status, body } = await getJson(backend, `/groups/${id}`);
      expect(status, `id ${id}`).toBe(404);
      expect(body).toMatchObject({ error: { code: 'GROUP_NOT_FOUND' } });
    }
    for (const id of [1, 9, 11, 999]) expect((await backend.app.request(`/groups/${id}`)).status, `id ${id}`).toBe(200);
  });

  it('answers 400 INVALID_GROUP_ID for malformed ids', async () => {
    const backend = fastBackend();
    for (const id of ['abc', '0', '01', '-1', '1.5', '1e3', '12345678901234567', '%20']) {
      const { status, body } = await getJson(backend, `/groups/${id}`);
      expect(status, `id ${id}`).toBe(400);
      expect(body).toMatchObject({ error: { code: 'INVALID_GROUP_ID' } });
    }
  });
});

describe('GET /groups?ids=', () => {
  it('maps each id to its profile or null', async () => {
    const backend = fastBackend({ missingIds: [2] });
    const { status, body } = await getJson(backend, '/groups?ids=1,2,3');
    expect(status).toBe(200);
    expect(body).toEqual({ '1': generateProfile(1), '2': null, '3': generateProfile(3) });
  });

  it('answers duplicate ids once', async () => {
    const backend = fastBackend();
    const { status, body } = await getJson(backend, '/groups?ids=5,6,5,5');
    expect(status).toBe(200);
    expect(Object.keys(body as object).sort()).toEqual(['5', '6']);
    expect(backend.stats()).toMatchObject({ batchCalls: 1, batchIds: 2, byId: { '5': 1, '6': 1 } });
  });

  it('answers 400 for empty, malformed or too many ids', async () => {
    const backend = fastBackend({ maxBatchIds: 3 });
    for (const query of ['', '?ids=', '?ids=1,,2', '?ids=1,', '?ids=1,abc', '?ids=0', '?ids=1,2,3,4', '?ids=1,1,1,1']) {
      const { status, body } = await getJson(backend, `/groups${query}`);
      expect(status, query).toBe(400);
      expect(body).toMatchObject({ error: { code: 'INVALID_GROUP_ID' } });
    }
    expect((await backend.app.request('/groups?ids=1,2,3')).status).toBe(200);
  });
});

describe('counters', () => {
  it('counts calls, single and batch calls, ids, and resets', async () => {
    const backend = fastBackend({ missingIds: [9] });
    await backend.app.request('/groups/1');
    await backend.app.request('/groups/1');
    await backend.app.request('/groups/9');
    await backend.app.request('/groups?ids=1,2,9');
    await backend.app.request('/groups/abc');
    const expected: MockStats = {
      calls: 5,
      singleCalls: 4,
      batchCalls: 1,
      batchIds: 3,
      exportCalls: 0,
      byId: { '1': 3, '2': 1, '9': 2 },
      inFlight: 0,
      maxInFlight: 1,
      mode: 'normal',
    };
    expect(backend.stats()).toEqual(expected);
    expect(await getJson(backend, '/__stats')).toEqual({ status: 200, body: expected });

    const reset = await post(backend, '/__reset');
    expect(reset.status).toBe(204);
    expect(backend.stats()).toEqual({
      calls: 0,
      singleCalls: 0,
      batchCalls: 0,
      batchIds: 0,
      exportCalls: 0,
      byId: {},
      inFlight: 0,
      maxInFlight: 0,
      mode: 'normal',
    });

    backend.setMode('error');
    await backend.app.request('/groups/1');
    backend.reset();
    expect(backend.stats()).toMatchObject({ calls: 0, mode: 'normal' });
  });

  it('tracks concurrent requests in maxInFlight', async () => {
    const backend = fastBackend();
    const responses = await Promise.all(Array.from({ length: 5 }, (_, i) => backend.app.request(`/groups/${i + 1}`)));
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200, 200, 200]);
    expect(backend.stats()).toMatchObject({ calls: 5, inFlight: 0, maxInFlight: 5 });
    backend.reset();
    await backend.app.request('/groups/1');
    expect(backend.stats().maxInFlight).toBe(1);
  });

  it('counts at arrival, before the answer', async () => {
    const backend = fastBackend();
    backend.setMode('hang');
    const pending = backend.app.request('/groups/3');
    await until(() => backend.stats().inFlight === 1);
    expect(backend.stats()).toMatchObject({ calls: 1, singleCalls: 1, byId: { '3': 1 }, inFlight: 1 });
    backend.setMode('normal');
    expect((await pending).status).toBe(200);
    expect(backend.stats()).toMatchObject({ calls: 1, inFlight: 0, maxInFlight: 1 });
  });
});

describe('capacity', () => {
  it('serves `capacity` calls at once; the rest wait their turn, in order, so latency grows with the queue', async () => {
    vi.useFakeTimers();
    try {
      const backend = createMockBackend({ latencyMs: 100, latencyJitterMs: 0, capacity: 2 });
      const answered: number[] = [];
      const calls = [1, 2, 3, 4, 5].map(async (id) => {
        const response = await backend.app.request(`/groups/${id}`);
        answered.push(id);
        return response.status;
      });
      await vi.advanceTimersByTimeAsync(0);
      expect(backend.stats()).toMatchObject({ inFlight: 5, maxInFlight: 5 });
      await vi.advanceTimersByTimeAsync(100);
      expect(answered).toEqual([1, 2]);
      await vi.advanceTimersByTimeAsync(100);
      expect(answered).toEqual([1, 2, 3, 4]);
      await vi.advanceTimersByTimeAsync(100);
      expect(await Promise.all(calls)).toEqual([200, 200, 200, 200, 200]);
      expect(answered).toEqual([1, 2, 3, 4, 5]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a waiter whose client went away leaves the queue without taking a slot', async () => {
    const slots = new Slots(1);
    expect(await slots.acquire(new AbortController().signal)).toBe(true);
    const gone = new AbortController();
    const leaving = slots.acquire(gone.signal);
    const next = slots.acquire(new AbortController().signal);
    gone.abort();
    expect(await leaving).toBe(false);
    slots.release();
    expect(await next).toBe(true);
  });

  it('refuses a capacity that is not a whole number of calls', () => {
    expect(() => createMockBackend({ capacity: -1 })).toThrow(OptionError);
    expect(() => createMockBackend({ capacity: 1.5 })).toThrow(/capacity/);
  });
});

describe('errorRate', () => {
  it('fails the calls whose random draw is below the rate', async () => {
    const draws = [0.1, 0.9, 0.49, 0.5];
    const backend = fastBackend({ errorRate: 0.5, random: () => draws.shift() ?? 1 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await backend.app.request('/groups/1')).status);
    expect(statuses).toEqual([500, 200, 500, 200]);
    expect(backend.stats().calls).toBe(4);
  });
});

describe('modes', () => {
  it('error: every /groups* call answers 500 JSON', async () => {
    const backend = fastBackend();
    backend.setMode('error');
    for (const path of ['/groups/1', '/groups?ids=1,2']) {
      const { status, body } = await getJson(backend, path);
      expect(status).toBe(500);
      expect(body).toMatchObject({ error: { code: 'INTERNAL' } });
    }
    expect(backend.stats()).toMatchObject({ calls: 2, mode: 'error' });
  });

  it('slow: answers normally after the configured latency', async () => {
    const backend = fastBackend();
    backend.setMode('slow', 0);
    const response = await backend.app.request('/groups/1');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(JSON.stringify(generateProfile(1)));
    expect(backend.stats()).toMatchObject({ calls: 1, mode: 'slow' });
  });

  it('hang: answers 503 after hangTimeoutMs', async () => {
    const backend = fastBackend({ hangTimeoutMs: 1 });
    backend.setMode('hang');
    const { status, body } = await getJson(backend, '/groups/1');
    expect(status).toBe(503);
    expect(body).toMatchObject({ error: { code: 'OVERLOADED' } });
    expect(backend.stats()).toMatchObject({ calls: 1, inFlight: 0 });
  });

  it('hang: releases the request when the client goes away', async () => {
    const backend = fastBackend();
    backend.setMode('hang');
    const client = new AbortController();
    const pending = Promise.resolve(backend.app.request('/groups/1', { signal: client.signal }));
    await until(() => backend.stats().inFlight === 1);
    client.abort();
    await pending.catch(() => undefined);
    await until(() => backend.stats().inFlight === 0);
  });

  it('hang: a mode change answers parked requests by the new mode', async () => {
    const backend = fastBackend();
    backend.setMode('hang');
    const pending = Promise.all([backend.app.request('/groups/1'), backend.app.request('/groups?ids=1,2')]);
    await until(() => backend.stats().inFlight === 2);
    backend.setMode('error');
    expect((await pending).map((response) => response.status)).toEqual([500, 500]);
  });

  it('garbage: 200 with an HTML body', async () => {
    const backend = fastBackend();
    backend.setMode('garbage');
    const response = await backend.app.request('/groups/1');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await response.text()).toBe('<html>not json');
  });

  it('not-object: 200 with a JSON array', async () => {
    const backend = fastBackend();
    backend.setMode('not-object');
    expect(await getJson(backend, '/groups/1')).toEqual({ status: 200, body: [1, 2, 3] });
  });

  it('oversized: 200 with a valid 2 MiB JSON object', async () => {
    const backend = fastBackend();
    backend.setMode('oversized');
    const response = await backend.app.request('/groups/1');
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(Buffer.byteLength(text)).toBe(2 * 1024 * 1024);
    const parsed: unknown = JSON.parse(text);
    expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
  });

  it('down: in-process there is no socket, so a network-error response stands in', async () => {
    const backend = fastBackend();
    backend.setMode('down');
    const response = await backend.app.request('/groups/1');
    expect(response.type).toBe('error');
    expect(response.status).toBe(0);
    expect(backend.stats()).toMatchObject({ calls: 1, inFlight: 0 });
  });

  it('flapping: odd calls since the mode was set fail, even calls answer normally', async () => {
    const backend = fastBackend();
    backend.setMode('flapping');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await backend.app.request('/groups/1')).status);
    expect(statuses).toEqual([500, 200, 500, 200, 500]);
    backend.setMode('flapping');
    expect((await backend.app.request('/groups/1')).status).toBe(500);
    expect(backend.stats().calls).toBe(6);
  });

  it('applies only to /groups*', async () => {
    const backend = fastBackend();
    backend.setMode('down');
    expect(await (await backend.app.request('/healthz')).text()).toBe('ok');
    expect((await backend.app.request('/__stats')).status).toBe(200);
  });
});

describe('POST /__mode', () => {
  it('sets every known mode', async () => {
    const backend = fastBackend();
    for (const mode of MOCK_MODES) {
      expect((await post(backend, '/__mode', { mode })).status).toBe(204);
      expect(backend.stats().mode).toBe(mode);
    }
  });

  it('accepts latencyMs for slow', async () => {
    const backend = fastBackend();
    expect((await post(backend, '/__mode', { mode: 'slow', latencyMs: 0 })).status).toBe(204);
    expect((await backend.app.request('/groups/1')).status).toBe(200);
  });

  it('rejects unknown modes, bad latencyMs and bad bodies with 400', async () => {
    const backend = fastBackend();
    const unknown = await post(backend, '/__mode', { mode: 'explode' });
    expect(unknown.status).toBe(400);
    const body = (await unknown.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('BAD_REQUEST');
    expect(body.error.message).toContain('mode');
    expect(body.error.message).toContain('flapping');

    const latency = await post(backend, '/__mode', { mode: 'slow', latencyMs: -5 });
    expect(latency.status).toBe(400);
    expect(((await latency.json()) as { error: { message: string } }).error.message).toContain('latencyMs');

    expect((await post(backend, '/__mode', '{not json')).status).toBe(400);
    expect((await post(backend, '/__mode', [])).status).toBe(400);
    expect((await post(backend, '/__mode')).status).toBe(400);
    expect(backend.stats().mode).toBe('normal');
  });
});

describe('touch', () => {
  it('bumps the revision so the profile changes, until reset', async () => {
    const backend = fastBackend();
    const original = await (await backend.app.request('/groups/7')).text();

    backend.touch(7);
    const touched = (await getJson(backend, '/groups/7')).body as GroupProfile;
    expect(touched).toEqual(generateProfile(7, 1));

    expect((await post(backend, '/__touch/7')).status).toBe(204);
    const again = (await getJson(backend, '/groups?ids=7,8')).body as Record<string, GroupProfile>;
    expect(again['7']).toEqual(generateProfile(7, 2));
    expect(again['8']).toEqual(generateProfile(8, 0));
    expect(Date.parse(again['7']?.updatedAt ?? '')).toBeGreaterThan(Date.parse(touched.updatedAt));

    backend.reset();
    expect(await (await backend.app.request('/groups/7')).text()).toBe(original);
  });

  it('rejects bad ids', async () => {
    const backend = fastBackend();
    expect((await post(backend, '/__touch/abc')).status).toBe(400);
    expect(() => backend.touch(0)).toThrow(OptionError);
  });
});

describe('other routes', () => {
  it('answers /healthz and 404 JSON for unknown routes', async () => {
    const backend = fastBackend();
    const health = await backend.app.request('/healthz');
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok');
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/groups/1'],
      ['GET', '/groups/1/extra'],
    ] as const) {
      const response = await backend.app.request(path, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: 'ROUTE_NOT_FOUND' } });
    }
    expect(backend.stats().calls).toBe(0);
  });
});

describe('options', () => {
  it('throws an error naming the invalid option', () => {
    const cases: [Partial<MockBackendOptions>, string][] = [
      [{ latencyMs: -1 }, 'latencyMs'],
      [{ latencyJitterMs: Number.NaN }, 'latencyJitterMs'],
      [{ errorRate: 1.5 }, 'errorRate'],
      [{ missingEvery: 2.5 }, 'missingEvery'],
      [{ missingIds: [1, 0] }, 'missingIds[1]'],
      [{ missingIds: 'x' as unknown as number[] }, 'missingIds'],
      [{ maxId: 0 }, 'maxId'],
      [{ maxBatchIds: 0 }, 'maxBatchIds'],
      [{ hangTimeoutMs: 120_000 }, 'hangTimeoutMs'],
      [{ random: 'no' as unknown as () => number }, 'random'],
    ];
    for (const [options, name] of cases) {
      let thrown: unknown;
      try {
        createMockBackend(options);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, name).toBeInstanceOf(OptionError);
      expect((thrown as OptionError).option).toBe(name);
      expect((thrown as OptionError).message).toContain(name);
    }
  });

  it('setMode rejects unknown modes and bad latencies', () => {
    const backend = fastBackend();
    expect(() => backend.setMode('explode' as never)).toThrow(/mode/);
    expect(() => backend.setMode('slow', -1)).toThrow(/latencyMs/);
    expect(backend.stats().mode).toBe('normal');
  });
});

describe('startMockBackend (real socket)', () => {
  it('serves over HTTP, drops connections in down mode, and closes promptly', async () => {
    const running = await startMockBackend({ ...FAST, port: 0 });
    try {
      expect(running.url).toBe(`http://127.0.0.1:${running.port}`);
      expect(running.port).toBeGreaterThan(0);

      const response = await fetch(`${running.url}/groups/42`);
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(JSON.stringify(generateProfile(42)));

      expect(
        (await fetch(`${running.url}/__mode`, { method: 'POST', body: JSON.stringify({ mode: 'down' }) })).status,
      ).toBe(204);
      await expect(fetch(`${running.url}/groups/42`)).rejects.toThrow();

      running.backend.setMode('normal');
      expect((await fetch(`${running.url}/groups/43`)).status).toBe(200);

      const stats = (await (await fetch(`${running.url}/__stats`)).json()) as MockStats;
      expect(stats).toMatchObject({ calls: 3, singleCalls: 3, byId: { '42': 2, '43': 1 }, mode: 'normal' });

      // A parked request must not keep close() waiting.
      running.backend.setMode('hang');
      const parked = fetch(`${running.url}/groups/44`);
      parked.catch(() => undefined);
      await until(() => running.backend.stats().inFlight === 1);
      await running.close();
      await expect(parked).rejects.toThrow();
      await until(() => running.backend.stats().inFlight === 0);
    } finally {
      await running.close();
    }
  });

  it('rejects an invalid port', async () => {
    await expect(startMockBackend({ port: 70_000 })).rejects.toThrow(/port/);
  });
});

describe('cli', () => {
  const cwd = fileURLToPath(new URL('..', import.meta.url));
  const runCli = (env: Record<string, string>) =>
    spawn(process.execPath, ['--import', 'tsx', 'src/mock-backend/cli.ts'], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  it('exits 1 naming the invalid variable', async () => {
    const child = runCli({ MOCK_ERROR_RATE: 'lots' });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toContain('MOCK_ERROR_RATE');
    expect(stderr).toContain('[0, 1]');
  });

  it('logs one line on start, serves, and exits 0 on SIGTERM', async () => {
    const child = runCli({ MOCK_PORT: '0', MOCK_LATENCY_MS: '0', MOCK_LATENCY_JITTER_MS: '0' });
    try {
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      await until(() => stdout.includes('\n'));
      const line = JSON.parse(stdout.split('\n')[0] ?? '') as { url: string; latencyMs: number };
      expect(line.latencyMs).toBe(0);
      expect(await (await fetch(`${line.url}/healthz`)).text()).toBe('ok');

      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('the id export (GET /group-ids)', () => {
  it('pages through the existing ids in order, skipping missing and adding created ones, without counting as calls', async () => {
    const backend = createMockBackend({
      latencyMs: 0,
      latencyJitterMs: 0,
      maxId: 25,
      missingEvery: 10,
      missingIds: [3],
    });
    const pages: { ids: number[]; next: string | null }[] = [];
    await backend.app.request('/__create/40', { method: 'POST' });
    let after: string | null = null;
    do {
      const response = await backend.app.request(`/group-ids?limit=10${after === null ? '' : `&after=${after}`}`);
      const page = (await response.json()) as { ids: number[]; next: string | null };
      pages.push(page);
      after = page.next;
    } while (after !== null);
    const all = pages.flatMap((page) => page.ids);
    expect(all).toEqual([1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 25, 40]);
    expect(pages.every((page) => page.ids.length <= 10)).toBe(true);
    expect(backend.stats()).toMatchObject({ calls: 0, exportCalls: pages.length });
    expect((await backend.app.request('/groups/40')).status).toBe(200);
    expect((await backend.app.request('/group-ids?limit=0')).status).toBe(400);
  });
});
