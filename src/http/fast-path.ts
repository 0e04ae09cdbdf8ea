import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { AnswerEncoder } from './respond.js';
import { answerMiss, policyFor, type EngineReader } from './routes.js';

export interface FastPathOptions {
  engine: EngineReader;
  /** Same rule as the Hono routes: raw path segment → cache key, or undefined. */
  parseId: (raw: string) => string | undefined;
  cacheName: string;
  /** Mount point of the group routes, with trailing slash. Default `/groups/`. */
  prefix?: string;
  metrics?: ProxyMetrics;
  /** As the Hono routes' option: `s-maxage` for shared caches, s. Default: none. */
  sMaxAgeSeconds?: number;
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
  const encoder = new AnswerEncoder(cacheName, policyFor(engine, options.sMaxAgeSeconds));
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
      // No abort signal per waiter: an AbortController and its listeners cost more than the rest of a
      // waiter, and a burst's thousand would outlive the young generation. A client that leaves
      // keeps its waiter until the shared load settles (or waitTimeoutMs), and is then not written to.
      answerMiss(engine, key, ifNoneMatch, encoder, undefined)
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
    const answer = encoder.encode(entry, 'hit', engine.now(), ifNoneMatch);
    res.writeHead(answer.status, answer.headers);
    res.end(method === 'HEAD' ? undefined : (answer.body ?? undefined));
    recordHit?.(answer.status, (performance.now() - started) / 1000);
    return true;
  };
}
