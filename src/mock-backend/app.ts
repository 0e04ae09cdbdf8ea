/**
 * The mock group-profile backend as a Hono app: deterministic profiles behind configurable latency, missing ids
 * and fault modes, with counters that let tests assert how many upstream calls the proxy really made.
 */
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorCode } from '../errors.js';
import { integerOption, OptionError } from '../util/options.js';
import { parseBatchIds, parseGroupId, GROUP_ID_PATTERN, type ParsedIds } from './ids.js';
import { DEFAULT_SLOW_LATENCY_MS, isMockMode, MOCK_MODES, type MockMode } from './modes.js';
import { MAX_WAIT_MS, resolveMockBackendOptions, type MockBackendOptions } from './options.js';
import { generateProfile } from './profiles.js';
import { MockState, type MockStats } from './state.js';
import { Slots } from './slots.js';
import { sleep } from './wait.js';

export type { MockBackendOptions } from './options.js';
export type { MockStats } from './state.js';

export interface MockBackend {
  app: Hono;
  /** Snapshot of the counters (a copy; later calls do not change it). */
  stats(): MockStats;
  /** Zeroes counters, clears touched revisions, returns to `normal`. */
  reset(): void;
  /** Switches the fault mode; `latencyMs` is the delay of `slow` (default 3000). */
  setMode(mode: MockMode, latencyMs?: number): void;
  /** Bumps the revision of a group, so its profile changes (an incremental update). */
  touch(id: number): void;
  /** The group's current revision (0 until touched): what a fresh load answers. */
  revisionOf(id: number): number;
}

const OVERSIZED_BYTES = 2 * 1024 * 1024;
let oversizedBody: string | undefined;
// Built on first use only: 2 MiB is not worth holding for backends that never need it.
function oversized(): string {
  oversizedBody ??= `{"padding":"${'x'.repeat(OVERSIZED_BYTES - '{"padding":""}'.length)}"}`;
  return oversizedBody;
}

function errorJson(c: Context, status: ContentfulStatusCode, code: ErrorCode, message: string): Response {
  return c.json({ error: { code, message } }, status);
}

export function createMockBackend(options?: Partial<MockBackendOptions>): MockBackend {
  const config = resolveMockBackendOptions(options);
  const missingIds = new Set(config.missingIds);
  const state = new MockState();
  const app = new Hono();

  /** Groups created after start (POST /__create/:id): they exist whatever the rules below say. */
  const created = new Set<number>();
  const isMissing = (id: number): boolean =>
    !created.has(id) &&
    (id > config.maxId || (config.missingEvery > 0 && id % config.missingEvery === 0) || missingIds.has(id));

  /** `revisions` were read when the request arrived: a change during the latency is not seen, as with a real database read. */
  const profileOrNull = (
    raw: string,
    revisions: ReadonlyMap<string, number>,
  ): ReturnType<typeof generateProfile> | null => {
    const id = Number(raw);
    return isMissing(id) ? null : generateProfile(id, revisions.get(raw) ?? state.revisionOf(id));
  };

  const setMode = (mode: unknown, latencyMs?: unknown): void => {
    if (!isMockMode(mode)) throw new OptionError('mode', `one of ${MOCK_MODES.join(', ')}`, mode);
    state.setMode(mode, integerOption('latencyMs', latencyMs ?? DEFAULT_SLOW_LATENCY_MS, 0, MAX_WAIT_MS));
  };

  const serving = new Slots(config.capacity);

  const normalLatency = (): number => {
    if (config.latencyJitterMs === 0) return config.latencyMs;
    return Math.max(0, config.latencyMs + (config.random() * 2 - 1) * config.latencyJitterMs);
  };

  /** The normal answer, after validation and missing-id rules. */
  const answer = (
    c: Context,
    kind: 'single' | 'batch',
    parsed: ParsedIds,
    revisions: ReadonlyMap<string, number>,
  ): Response => {
    if (!parsed.ok) return errorJson(c, 400, 'INVALID_GROUP_ID', parsed.message);
    if (config.errorRate > 0 && config.random() < config.errorRate) {
      return errorJson(c, 500, 'INTERNAL', 'injected failure (errorRate)');
    }
    if (kind === 'batch') {
      const body: Record<string, unknown> = {};
      for (const id of parsed.ids) body[id] = profileOrNull(id, revisions);
      return c.json(body);
    }
    const id = parsed.ids[0] ?? '';
    const profile = profileOrNull(id, revisions);
    return profile === null ? errorJson(c, 404, 'GROUP_NOT_FOUND', `group ${id} does not exist`) : c.json(profile);
  };

  const respond = async (c: Context, kind: 'single' | 'batch', parsed: ParsedIds): Promise<Response> => {
    const revisions = new Map(parsed.ok ? parsed.ids.map((id) => [id, state.revisionOf(Number(id))] as const) : []);
    const signal = c.req.raw.signal;
    // A mode change releases parked requests, which are then answered by the new mode.
    const hangDeadline = Date.now() + config.hangTimeoutMs;
    while (state.mode === 'hang') {
      const released = await state.waitForModeChange(hangDeadline - Date.now(), signal);
      if (!released) return errorJson(c, 503, 'OVERLOADED', 'mock backend hung (mode hang)');
    }
    const mode = state.mode;
    if (mode === 'down') return dropConnection(c);
    // The data is read at arrival (revisions above); the wait only delays the answer, as with a real slow server.
    if (!(await serving.acquire(signal))) return errorJson(c, 503, 'OVERLOADED', 'the client went away while queued');
    try {
      await sleep(mode === 'slow' ? state.slowLatencyMs : normalLatency(), signal);
    } finally {
      serving.release();
    }
    switch (mode) {
      case 'error':
        return errorJson(c, 500, 'INTERNAL', 'injected failure (mode error)');
      case 'flapping':
        return state.nextFlapFails()
          ? errorJson(c, 500, 'INTERNAL', 'injected failure (mode flapping)')
          : answer(c, kind, parsed, revisions);
      case 'garbage':
        return c.body('<html>not json', 200, { 'content-type': 'text/html' });
      case 'not-object':
        return c.json([1, 2, 3]);
      case 'oversized':
        return c.body(oversized(), 200, { 'content-type': 'application/json' });
      case 'normal':
      case 'slow':
        return answer(c, kind, parsed, revisions);
    }
  };

  const groups = async (c: Context, kind: 'single' | 'batch', parsed: ParsedIds): Promise<Response> => {
    state.arrive(kind, parsed.ok ? parsed.ids : []);
    try {
      return await respond(c, kind, parsed);
    } finally {
      state.leave();
    }
  };

  /** The id export: existing ids ascending, `limit` (≤ 100,000) after `after`, by scanning the id space. */
  app.get('/group-ids', (c) => {
    state.arrive('export', []);
    const limit = Number(c.req.query('limit') ?? '1000');
    const afterRaw = c.req.query('after');
    const after = afterRaw === undefined ? 0 : Number(afterRaw);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100_000 || !Number.isSafeInteger(after) || after < 0) {
      return errorJson(c, 400, 'BAD_REQUEST', 'limit must be in [1, 100000] and after a group id');
    }
    const ids: number[] = [];
    const extra = [...created].filter((id) => id > after).sort((a, b) => a - b);
    let id = after + 1;
    while (ids.length < limit && (id <= config.maxId || extra.length > 0)) {
      if (id > config.maxId) id = Math.max(id, extra[0]!);
      if (!isMissing(id)) ids.push(id);
      while (extra.length > 0 && extra[0]! <= id) extra.shift();
      id++;
    }
    const last = ids.at(-1);
    const more = last !== undefined && (last < config.maxId || [...created].some((other) => other > last));
    return c.json({ ids, next: more ? String(last) : null });
  });
  app.post('/__create/:id', (c) => {
    const id = Number(c.req.param('id'));
    if (!Number.isSafeInteger(id) || id < 1) return errorJson(c, 400, 'INVALID_GROUP_ID', 'not a group id');
    created.add(id);
    missingIds.delete(id);
    return c.body(null, 204);
  });
  app.get('/groups/:id', (c) => groups(c, 'single', parseGroupId(c.req.param('id'))));
  app.get('/groups', (c) => groups(c, 'batch', parseBatchIds(c.req.query('ids'), config.maxBatchIds)));

  app.get('/__stats', (c) => c.json(state.stats()));
  app.post('/__reset', (c) => {
    state.reset();
    return c.body(null, 204);
  });
  app.post('/__mode', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return errorJson(c, 400, 'BAD_REQUEST', 'body must be JSON like {"mode":"slow","latencyMs":3000}');
    }
    if (typeof body !== 'object' || body === null)
      return errorJson(c, 400, 'BAD_REQUEST', 'body must be a JSON object');
    const { mode, latencyMs } = body as { mode?: unknown; latencyMs?: unknown };
    try {
      setMode(mode, latencyMs);
    } catch (error) {
      if (error instanceof OptionError) return errorJson(c, 400, 'BAD_REQUEST', error.message);
      throw error;
    }
    return c.body(null, 204);
  });
  app.post('/__touch/:id', (c) => {
    const raw = c.req.param('id');
    if (!GROUP_ID_PATTERN.test(raw))
      return errorJson(c, 400, 'INVALID_GROUP_ID', `group id must match ${GROUP_ID_PATTERN.source}`);
    state.touch(Number(raw));
    return c.body(null, 204);
  });
  app.get('/healthz', (c) => c.text('ok'));

  app.notFound((c) => errorJson(c, 404, 'ROUTE_NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`));
  app.onError((error, c) => errorJson(c, 500, 'INTERNAL', error.message));

  return {
    app,
    stats: () => state.stats(),
    reset: () => state.reset(),
    setMode,
    touch: (id) => state.touch(integerOption('id', id, 1)),
    revisionOf: (id) => state.revisionOf(integerOption('id', id, 1)),
  };
}

/** `down`: the socket is destroyed with no answer, as by a crashed upstream; in-process (no socket), a network-error Response. */
function dropConnection(c: Context): Response {
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
  if (incoming === undefined) return Response.error();
  incoming.socket.destroy();
  // Never written: the socket is gone. A valid status keeps the adapter quiet.
  return c.body(null, 502);
}
