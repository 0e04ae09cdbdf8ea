import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { LookupPipeline, type LookupPipelineOptions } from './pipeline.js';
import type { LookupAnswer } from './respond.js';

/** Mount point of the group routes in the sidecar, the fast path's only route (ROUTE_LABEL). */
const PREFIX = '/groups/';

/**
 * The sidecar's pre-Hono fast path for the bulk of the traffic: `GET|HEAD /groups/{valid id}` answered
 * straight on the Node response (an L1 hit synchronously); anything else returns false and goes to Hono.
 * Over the same LookupPipeline as the Hono route, so answers, metrics and logs cannot differ.
 */
export function createFastPath(
  source: LookupPipeline | LookupPipelineOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const pipeline = source instanceof LookupPipeline ? source : new LookupPipeline(source);
  const { timed, parseId } = pipeline;
  return (req, res) => {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    const url = req.url;
    if (url === undefined || !url.startsWith(PREFIX)) return false;
    const started = timed ? performance.now() : 0;
    try {
      const end = url.indexOf('?', PREFIX.length);
      const raw = url.slice(PREFIX.length, end === -1 ? undefined : end);
      if (raw.includes('/')) return false;
      const key = parseId(raw);
      if (key === undefined) return false;
      // No abort signal per waiter: an AbortController and its listeners cost more than the rest of a
      // waiter, and a burst's thousand would outlive the young generation. A client that leaves
      // keeps its waiter until the shared load settles (or waitTimeoutMs), and is then not written to.
      const answer = pipeline.answer(key, req.headers['if-none-match'], undefined, method, url, req);
      if (answer instanceof Promise)
        void answer.then((settled) => finish(pipeline, res, method, url, settled, started));
      else finish(pipeline, res, method, url, answer, started);
    } catch (error) {
      // Only the id rule can throw here (the pipeline never does): answered like any unexpected error.
      finish(pipeline, res, method, url, pipeline.fail(error, method, url), started);
    }
    return true;
  };
}

/**
 * Writes `answer` (a client that left counts as the Hono route's ABORTED), then records it. Never throws, so
 * a settled lookup is never an unhandled rejection: a failure here is reported and answered 500 if still possible.
 */
function finish(
  pipeline: LookupPipeline,
  res: ServerResponse,
  method: string,
  url: string,
  answer: LookupAnswer,
  started: number,
): void {
  try {
    if (res.destroyed) {
      answer = pipeline.clientClosed;
    } else {
      res.writeHead(answer.status, answer.headers);
      res.end(method === 'HEAD' ? undefined : (answer.body ?? undefined));
    }
    pipeline.record(answer, started);
    if (pipeline.logsAccess) pipeline.logAccess(method, url, answer.status, answer.headers['cache-status'], started);
  } catch (error) {
    const internal = pipeline.fail(error, method, url);
    if (!res.headersSent && answer !== internal) finish(pipeline, res, method, url, internal, started);
    else if (!res.writableEnded) res.destroy();
  }
}
