import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { encodeEntry } from './respond.js';
import type { EngineReader } from './routes.js';

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
 * The pre-Hono fast path for L1 hits, the bulk of the traffic: a fresh entry
 * for a valid id is written straight to the Node response. Anything else (a
 * miss, a bad id, another route or method) returns false and goes to Hono.
 * Both paths encode answers with the same `encodeEntry`, so headers and bytes
 * cannot differ (tests/fast-path.test.ts proves it).
 */
export function createFastPath(options: FastPathOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { engine, parseId, cacheName, metrics } = options;
  const prefix = options.prefix ?? '/groups/';
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
    const entry = engine.peek(key);
    if (entry === undefined) return false;
    const ifNoneMatch = req.headers['if-none-match'];
    const answer = encodeEntry(entry, 'hit', engine.now(), ifNoneMatch, cacheName);
    res.writeHead(answer.status, answer.headers);
    res.end(method === 'HEAD' ? undefined : (answer.body ?? undefined));
    if (metrics !== undefined) {
      metrics.requests.inc({ route: '/groups/:id', status: answer.status, cache: 'hit' });
      metrics.recordL1('hit');
      metrics.requestDuration.observe({ route: '/groups/:id' }, (performance.now() - started) / 1000);
    }
    return true;
  };
}
