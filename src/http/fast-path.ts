import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { encodeEntry, type EncodedResponse } from './respond.js';
import { answerMiss, type EngineReader } from './routes.js';

export interface FastPathOptions {
  engine: EngineReader;
  /** Same rule as the Hono routes: raw path segment → cache key, or undefined. */
  parseId: (raw: string) => string | undefined;
  cacheName: string;
  /** Mount point of the group routes, with trailing slash. Default `/groups/`. */
  prefix?: string;
  metrics?: ProxyMetrics;
}

/**
 * The sidecar's pre-Hono fast path for profile lookups, the bulk of the
 * traffic: `GET|HEAD /groups/{valid id}` is answered straight on the Node
 * response, an L1 hit synchronously, a miss through the same `answerMiss` the
 * Hono route uses (a burst's 1000 waiters are written without a framework in
 * between). Anything else (a bad id, another route or method) returns false
 * and goes to Hono. Both paths encode with the same functions, so headers and
 * bytes cannot differ (tests/fast-path.test.ts proves it).
 */
export function createFastPath(options: FastPathOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { engine, parseId, cacheName, metrics } = options;
  const prefix = options.prefix ?? '/groups/';
  const recordHit = metrics?.hitRecorder();
  // Answers encoded during the current millisecond, by entry: a hot key is encoded once per ms,
  // and the memo never holds more than the keys hit within one millisecond.
  let memoNow = Number.NaN;
  const memo = new Map<object, EncodedResponse>();
  return (req, res) => {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    const url = req.url;
    if (url === undefined || !url.startsWith(prefix)) return false;
    const started = metrics === undefined ? 0 : performance.now();
    let end = url.indexOf('?', prefix.length);
    if (end === -1) end = url.length;
    const raw = url.slice(prefix.length, end);
    if (raw.includes('/')) return false;
    const key = parseId(raw);
    if (key === undefined) return false;
    const ifNoneMatch = req.headers['if-none-match'];
    const entry = engine.peek(key);
    if (entry === undefined) {
      const gone = new AbortController();
      res.once('close', () => {
        if (!res.writableFinished) gone.abort();
      });
      answerMiss(engine, key, ifNoneMatch, cacheName, gone.signal)
        .then(({ response, cache }) => {
          if (res.destroyed) return;
          res.writeHead(response.status, response.headers);
          res.end(method === 'HEAD' ? undefined : (response.body ?? undefined));
          metrics?.recordAnswer('/groups/:id', response.status, cache, (performance.now() - started) / 1000);
        })
        .catch(() => {
          // Never an unhandled rejection: whatever broke, this one response is lost, not the process.
          if (res.headersSent) res.destroy();
          else res.writeHead(500, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end('{"error":{"code":"INTERNAL","message":"internal error"}}');
        });
      return true;
    }
    const now = engine.now();
    let answer: EncodedResponse;
    if (ifNoneMatch === undefined) {
      // encodeEntry is a pure function of (entry, now): reuse its answer within the same millisecond.
      if (now !== memoNow) {
        memo.clear();
        memoNow = now;
      }
      const memoized = memo.get(entry);
      if (memoized !== undefined) answer = memoized;
      else {
        answer = encodeEntry(entry, 'hit', now, undefined, cacheName);
        memo.set(entry, answer);
      }
    } else {
      answer = encodeEntry(entry, 'hit', now, ifNoneMatch, cacheName);
    }
    res.writeHead(answer.status, answer.headers);
    res.end(method === 'HEAD' ? undefined : (answer.body ?? undefined));
    recordHit?.(answer.status, (performance.now() - started) / 1000);
    return true;
  };
}
