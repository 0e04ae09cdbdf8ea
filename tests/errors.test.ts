import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { CoalescingCache } from '../src/engine/engine.js';
import { createKeyedCache } from '../src/engine/keyed.js';
import type { Loader } from '../src/engine/options.js';
import {
  internalCause,
  ProxyError,
  STATUS_OF_CODE,
  toLoaderError,
  toProxyError,
  type ErrorCode,
} from '../src/errors.js';
import { createProxyApp } from '../src/http/app.js';
import { createEventsFastPath } from '../src/http/events-fast-path.js';
import type { RequestLine } from '../src/http/pipeline.js';
import { methodNotAllowed } from '../src/http/respond.js';
import { BatchLoader } from '../src/origin/batch-loader.js';
import { PushHub } from '../src/push/hub.js';
import { ManualClock } from '../src/util/clock.js';
import { OptionError } from '../src/util/options.js';

const CODES = Object.keys(STATUS_OF_CODE) as ErrorCode[];

const closing: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0)) await close();
});

describe('ProxyError: the status comes from the code', () => {
  it.each(CODES)('%s has its documented status without restating it', (code) => {
    const error = new ProxyError(code, 'm');
    expect(error.status).toBe(STATUS_OF_CODE[code]);
    expect(error).toMatchObject({ code, message: 'm', name: 'ProxyError' });
  });

  it('takes retryAfterSeconds, headers and cause as options', () => {
    const cause = new Error('under');
    const error = new ProxyError('RATE_LIMITED', 'slow down', {
      retryAfterSeconds: 3,
      headers: { ratelimit: 'x' },
      cause,
    });
    expect(error).toMatchObject({ status: 429, retryAfterSeconds: 3, headers: { ratelimit: 'x' }, cause });
  });

  it('lets an upstream code carry the upstream’s own status, and nothing else', () => {
    expect(new ProxyError('UPSTREAM_STATUS', 'upstream answered 503', { status: 503 }).status).toBe(503);
    expect(() => new ProxyError('UPSTREAM_STATUS', 'x', { status: 200 })).toThrow(OptionError);
    expect(() => new ProxyError('OVERLOADED', 'x', { status: 500 })).toThrow(OptionError);
  });

  it('still takes the legacy status argument when it is the documented one (or an allowed override)', () => {
    expect(new ProxyError('CLOSED', 'x', 503, { retryAfterSeconds: 1 })).toMatchObject({
      status: 503,
      retryAfterSeconds: 1,
    });
    expect(new ProxyError('UPSTREAM_STATUS', 'x', 503).status).toBe(503);
    const thrown = (() => {
      try {
        new ProxyError('WAIT_TIMEOUT', 'x', 502);
      } catch (error) {
        return error;
      }
    })();
    expect(thrown).toBeInstanceOf(OptionError);
    expect((thrown as OptionError).option).toBe('status');
  });
});

describe('toProxyError and toLoaderError', () => {
  it('makes anything but a ProxyError INTERNAL (500, "internal error"), keeping it as the cause', () => {
    const bug = new TypeError('x');
    const error = toProxyError(bug);
    expect(error).toBeInstanceOf(ProxyError);
    expect(error).toMatchObject({ code: 'INTERNAL', status: 500, message: 'internal error' });
    expect(error.cause).toBe(bug);
    expect(internalCause(error)).toBe(bug);
    expect(toProxyError('a string').code).toBe('INTERNAL');
  });

  it('passes a ProxyError through, both of them', () => {
    const error = new ProxyError('UPSTREAM_TIMEOUT', 'slow');
    expect(toProxyError(error)).toBe(error);
    expect(toLoaderError(error)).toBe(error);
  });

  it('makes a loader’s own failure UPSTREAM_BAD_RESPONSE (502), keeping it as the cause', () => {
    const failure = new Error('socket hang up');
    const error = toLoaderError(failure);
    expect(error).toMatchObject({
      code: 'UPSTREAM_BAD_RESPONSE',
      status: 502,
      message: 'the loader failed: socket hang up',
    });
    expect(error.cause).toBe(failure);
  });
});

/** An app over a real engine, with its onError calls recorded. */
function appWith(options: { load?: Loader<{ id: string }>; serialize?: (value: { id: string }) => Buffer }) {
  const reported: [unknown, RequestLine][] = [];
  const engine = new CoalescingCache<{ id: string }>({
    load: options.load ?? (async (key) => ({ id: key })),
    serialize: options.serialize,
    ttlJitter: 0,
  });
  closing.push(() => engine.close());
  const app = createProxyApp({ engine, onError: (error, request) => reported.push([error, request]) });
  return { app, reported };
}

describe('through the HTTP app', () => {
  it('answers a bug in the proxy’s own code (the encoder throws) 500 INTERNAL and reports it once', async () => {
    const bug = new TypeError('cannot encode');
    const { app, reported } = appWith({
      serialize: () => {
        throw bug;
      },
    });
    const response = await app.request('/groups/7');
    expect(response.status).toBe(500);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(reported).toEqual([[bug, { method: 'GET', path: '/groups/7' }]]);
  });

  it('answers a multi-get id that failed with a bug INTERNAL in the list, and reports the bug once', async () => {
    const bug = new TypeError('cannot encode');
    const { app, reported } = appWith({
      serialize: () => {
        throw bug;
      },
    });
    const response = await app.request('/groups?ids=7,8');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      '7': { error: { code: 'INTERNAL', message: 'internal error' } },
      '8': { error: { code: 'INTERNAL', message: 'internal error' } },
    });
    expect(reported).toEqual([[bug, { method: 'GET', path: '/groups' }]]);
  });

  it('reports a bug behind a stale-if-error answer too', async () => {
    const bug = new TypeError('cannot encode');
    let now = 1_700_000_000_000;
    let encoded = 0;
    const reported: [unknown, RequestLine][] = [];
    const engine = new CoalescingCache<{ id: string }>({
      load: async (key) => ({ id: key }),
      serialize: (value) => {
        if (encoded++ > 0) throw bug;
        return Buffer.from(JSON.stringify(value));
      },
      ttlMs: 1000,
      ttlJitter: 0,
      staleTtlMs: 0,
      now: () => now,
    });
    closing.push(() => engine.close());
    const app = createProxyApp({ engine, onError: (error, request) => reported.push([error, request]) });
    expect((await app.request('/groups/7')).status).toBe(200);
    now += 2000;
    const stale = await app.request('/groups/7');
    expect(stale.status).toBe(200);
    expect(stale.headers.get('cache-status')).toContain('detail=stale-if-error');
    expect(reported).toEqual([[bug, { method: 'GET', path: '/groups/7' }]]);
  });

  it('still answers a user loader that throws a plain Error 502 UPSTREAM_BAD_RESPONSE, not a bug', async () => {
    const { app, reported } = appWith({ load: () => Promise.reject(new Error('socket hang up')) });
    const response = await app.request('/groups/7');
    expect(response.status).toBe(502);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('UPSTREAM_BAD_RESPONSE');
    expect(reported).toEqual([]);
  });

  it('answers a loader that throws synchronously 502 too', async () => {
    const { app, reported } = appWith({
      load: () => {
        throw new RangeError('bad');
      },
    });
    const response = await app.request('/groups/7');
    expect(response.status).toBe(502);
    expect(reported).toEqual([]);
  });
});

describe('the event-stream fast path', () => {
  it('answers a throwing parseId 500 INTERNAL and reports it', () => {
    const engine = new CoalescingCache<unknown>({ load: async (key) => ({ id: key }) });
    const hub = new PushHub({ engine, clock: new ManualClock() });
    closing.push(async () => {
      hub.close();
      await engine.close();
    });
    const bug = new TypeError('parseId broke');
    const reported: unknown[][] = [];
    const fastPath = createEventsFastPath(
      hub,
      () => {
        throw bug;
      },
      'c',
      (...args) => reported.push(args),
    );
    const written: { status?: number; body?: string } = {};
    const res = {
      writeHead(status: number) {
        written.status = status;
        return res;
      },
      end(body: Buffer) {
        written.body = body.toString();
      },
    };
    const req = { method: 'GET', url: '/groups/1/events', headers: {} };
    expect(fastPath(req as unknown as IncomingMessage, res as unknown as ServerResponse)).toBe(true);
    expect(written.status).toBe(500);
    expect(JSON.parse(written.body!)).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(reported).toEqual([[bug, 'GET', '/groups/1/events']]);
  });
});

describe('BatchLoader: a failing batch call is the upstream’s failure', () => {
  const context = { signal: new AbortController().signal };

  it('fails every key UPSTREAM_BAD_RESPONSE when loadMany rejects with a plain Error', async () => {
    const failure = new Error('connection reset');
    const loader = new BatchLoader<unknown>({ loadMany: () => Promise.reject(failure), maxKeys: 2 });
    const settled = await Promise.allSettled([loader.load('1', context), loader.load('2', context)]);
    for (const one of settled) {
      expect(one.status).toBe('rejected');
      const reason = (one as PromiseRejectedResult).reason as ProxyError;
      expect(reason).toBeInstanceOf(ProxyError);
      expect(reason).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', status: 502, cause: failure });
    }
  });

  it('does the same when loadMany throws synchronously or answers something other than a Map', async () => {
    const throwing = new BatchLoader<unknown>({
      loadMany: () => {
        throw new TypeError('not today');
      },
      maxKeys: 1,
    });
    await expect(throwing.load('1', context)).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    const odd = new BatchLoader<unknown>({
      loadMany: async () => ({ 1: 'x' }) as unknown as Map<string, unknown>,
      maxKeys: 1,
    });
    await expect(odd.load('1', context)).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
  });
});

describe('options rejected with an OptionError naming them', () => {
  const optionOf = (run: () => unknown): string | undefined => {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(OptionError);
      return (error as OptionError).option;
    }
    return undefined;
  };

  it('names keyFromString, loadMany and lastEventId', async () => {
    expect(
      optionOf(() =>
        createKeyedCache<number, unknown>({ load: async () => ({}), keyToString: (key: number) => String(key) }),
      ),
    ).toBe('keyFromString');
    expect(optionOf(() => new BatchLoader({ loadMany: 'no' as never }))).toBe('loadMany');
    const engine = new CoalescingCache<unknown>({ load: async (key) => ({ id: key }) });
    const hub = new PushHub({ engine, clock: new ManualClock() });
    closing.push(async () => {
      hub.close();
      await engine.close();
    });
    const rejected = await hub
      .events(['1'], { lastEventId: 'not-an-id' })
      .next()
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(rejected).toBeInstanceOf(OptionError);
    expect((rejected as OptionError).option).toBe('lastEventId');
  });
});

describe('methodNotAllowed', () => {
  it('is the one 405 answer, with the Allow header', () => {
    const answer = methodNotAllowed('GET, HEAD', 'c');
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('GET, HEAD');
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(answer.body!.toString())).toEqual({
      error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET, HEAD' },
    });
  });
});
