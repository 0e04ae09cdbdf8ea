import { performance } from 'node:perf_hooks';
import { Hono, type Context } from 'hono';
import { rawLastPathSegment } from '../ids.js';
import type { IncomingMessage } from 'node:http';
import { knownOptions } from '../util/options.js';
import { LookupPipeline, ROUTE_OPTION_NAMES, type ClientSource, type GroupProfileRoutesOptions } from './pipeline.js';
import { methodNotAllowed, type EncodedResponse, type LookupAnswer } from './respond.js';

export type { EngineReader, GroupProfileRoutesOptions } from './pipeline.js';

/**
 * `GET /:id` and the multi-get `GET /?ids=1,2,3` as a Hono sub-app, e.g. `app.route('/groups',
 * groupProfileRoutes({ engine }))`: a thin adapter over a LookupPipeline (given, or built from options).
 */
export function groupProfileRoutes(source: GroupProfileRoutesOptions | LookupPipeline): Hono {
  if (!(source instanceof LookupPipeline)) knownOptions('groupProfileRoutes', source, ROUTE_OPTION_NAMES);
  const pipeline = source instanceof LookupPipeline ? source : new LookupPipeline(source);

  const getGroupProfile = async (c: Context): Promise<Response> => {
    const started = pipeline.timed ? performance.now() : 0;
    const { url, method, raw } = c.req;
    let answer: LookupAnswer;
    try {
      const key = pipeline.parseId(rawLastPathSegment(url));
      if (key === undefined) {
        answer = pipeline.invalidId;
      } else {
        const pending = pipeline.answer(key, c.req.header('if-none-match'), raw, method, url, clientSourceOf(c));
        answer = pending instanceof Promise ? await pending : pending;
      }
    } catch (error) {
      answer = pipeline.fail(error, method, url);
    }
    pipeline.record(answer, started);
    return send(c, answer);
  };

  const getGroupProfiles = async (c: Context): Promise<Response> => {
    const started = performance.now();
    const { url, method, raw } = c.req;
    const answer = await pipeline.answerMany(
      url,
      c.req.header('if-none-match'),
      raw,
      method,
      started,
      clientSourceOf(c),
    );
    return send(c, answer);
  };

  const notAllowed = methodNotAllowed('GET, HEAD', pipeline.cacheName);
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
