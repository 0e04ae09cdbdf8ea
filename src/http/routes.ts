import { performance } from 'node:perf_hooks';
import { Hono, type Context } from 'hono';
import { rawLastPathSegment } from '../ids.js';
import type { IncomingMessage } from 'node:http';
import { knownOptions } from '../util/options.js';
import { LookupPipeline, ROUTE_OPTION_NAMES, type ClientSource, type GroupProfileRoutesOptions } from './pipeline.js';
import { methodNotAllowed, type EncodedResponse, type LookupAnswer } from './respond.js';

export type { EngineReader, GroupProfileRoutesOptions } from './pipeline.js';

export const ALLOWED_METHODS = 'GET, HEAD';

/**
 * `GET /:id` and the multi-get `GET /?ids=1,2,3` answered from the engine, as a Hono sub-app to
 * mount anywhere, e.g. `app.route('/groups', groupProfileRoutes({ engine }))`. A thin adapter
 * over a LookupPipeline: given options it builds its own, given a pipeline it
 * answers exactly as the other shells over it do.
 */
export function groupProfileRoutes(source: GroupProfileRoutesOptions | LookupPipeline): Hono {
  if (!(source instanceof LookupPipeline)) knownOptions('groupProfileRoutes', source, ROUTE_OPTION_NAMES);
  const pipeline = source instanceof LookupPipeline ? source : new LookupPipeline(source);

  const getGroupProfile = async (c: Context): Promise<Response> => {
    const started = pipeline.timed ? performance.now() : 0;
    const url = c.req.url;
    let answer: LookupAnswer;
    try {
      const key = pipeline.parseId(rawLastPathSegment(url));
      if (key === undefined) {
        answer = pipeline.invalidId;
      } else {
        const pending = pipeline.answer(
          key,
          c.req.header('if-none-match'),
          c.req.raw,
          c.req.method,
          url,
          clientSourceOf(c),
        );
        answer = pending instanceof Promise ? await pending : pending;
      }
    } catch (error) {
      answer = pipeline.fail(error, c.req.method, url);
    }
    pipeline.record(answer, started);
    return send(c, answer);
  };

  const getGroupProfiles = async (c: Context): Promise<Response> => {
    const started = performance.now();
    return send(
      c,
      await pipeline.answerMany(
        c.req.url,
        c.req.header('if-none-match'),
        c.req.raw,
        c.req.method,
        started,
        clientSourceOf(c),
      ),
    );
  };

  const notAllowed = methodNotAllowed(ALLOWED_METHODS, pipeline.cacheName);
  const refuseMethod = (c: Context): Response => send(c, notAllowed);

  return new Hono()
    .get('/', getGroupProfiles)
    .all('/', refuseMethod)
    .get('/:id', getGroupProfile)
    .all('/:id', refuseMethod);
}

/** Node's request under @hono/node-server (headers and socket address), else the Fetch Request (headers only). */
function clientSourceOf(c: Context): ClientSource {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming ?? c.req.raw;
}

export function send(c: Context, response: EncodedResponse): Response {
  const status = response.status as 200;
  // Buffers are Uint8Arrays; Hono's types only want them backed by a plain ArrayBuffer.
  if (response.body === null) return c.body(null, status, response.headers);
  return c.body(response.body as Uint8Array<ArrayBuffer>, status, response.headers);
}
