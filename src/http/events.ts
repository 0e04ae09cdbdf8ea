import { ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import { ProxyError, type ErrorCode } from '../errors.js';
import { decodeEventId, type FeedVector } from '../push/event-id.js';
import type { PushHub, PushSink } from '../push/hub.js';
import { knownOptions, OptionError } from '../util/options.js';
import { cacheNameOption, parseIdOption } from './pipeline.js';
import { rawListParameter } from './multi-get.js';
import { encodeError, methodNotAllowed } from './respond.js';
import { send } from './routes.js';

export interface EventRoutesOptions {
  /** The hub streams subscribe to. Required. */
  hub: PushHub;
  /** Canonical cache key for a raw id, or `undefined` when invalid (the lookups' rule). Default: `parseGroupId`. */
  parseId?: (raw: string) => string | undefined;
  /** The `Cache-Status` name on error answers. Default: `group-profile-proxy`. */
  cacheName?: string;
}

export function tooManySubscribers(): ProxyError {
  return new ProxyError(
    'TOO_MANY_SUBSCRIBERS',
    'this instance holds as many streams as it may: retry, or another instance',
    { retryAfterSeconds: 5 },
  );
}

/** A stream request, checked: the groups and where to resume from, or the error to answer. */
export type StreamRequest = { ids: string[]; resumeFrom: FeedVector | undefined } | { error: ProxyError };

export const EVENT_STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store',
  // nginx would otherwise buffer the stream.
  'x-accel-buffering': 'no',
};

/** Checks a stream request (at most `maxGroups` valid, distinct ids; a Last-Event-ID of ours) before anything is held or loaded. */
export function checkStreamRequest(
  rawIds: readonly string[],
  lastEventId: string | undefined,
  hub: PushHub,
  parseId: (raw: string) => string | undefined,
): StreamRequest {
  const error = (code: ErrorCode, message: string): StreamRequest => ({ error: new ProxyError(code, message) });
  if (rawIds.length === 0 || (rawIds.length === 1 && rawIds[0] === ''))
    return error('BAD_REQUEST', 'name the groups: /events?groups=1,2,3');
  if (rawIds.length > hub.maxGroups)
    return error('TOO_MANY_GROUPS', `at most ${hub.maxGroups} groups per stream, got ${rawIds.length}`);
  const ids = new Set<string>();
  for (const raw of rawIds) {
    const id = parseId(raw);
    if (id === undefined)
      return error(
        'INVALID_GROUP_ID',
        `invalid group id ${JSON.stringify(raw.slice(0, 40))}: expected a canonical decimal id`,
      );
    if (ids.has(id)) return error('BAD_REQUEST', `group ${id} is listed twice`);
    ids.add(id);
  }
  const resume = lastEventId === '' ? undefined : lastEventId;
  const resumeFrom = resume === undefined ? undefined : decodeEventId(resume);
  if (resume !== undefined && resumeFrom === undefined)
    return error('BAD_LAST_EVENT_ID', 'Last-Event-ID is not an event id of this proxy: reconnect without it');
  return { ids: [...ids], resumeFrom };
}

/**
 * `GET /groups/:id/events` and `GET /events?groups=1,2,3`: Server-Sent Events from a PushHub, as a Hono
 * sub-app to mount at the root. The hub bounds each stream's ReadableStream queue, counted in bytes.
 */
export function groupEventRoutes(options: EventRoutesOptions): Hono {
  knownOptions('groupEventRoutes', options, ['hub', 'parseId', 'cacheName']);
  const hub = options.hub;
  if (typeof (hub as Partial<PushHub> | undefined)?.subscribe !== 'function')
    throw new OptionError('hub', 'a PushHub', hub);
  const parseId = parseIdOption(options.parseId);
  const cacheName = cacheNameOption(options.cacheName);
  const fail = (c: Context, error: ProxyError): Response => send(c, encodeError(error, cacheName));
  const notAllowed = methodNotAllowed('GET', cacheName);
  const refuseMethod = (c: Context): Response => send(c, notAllowed);
  const open = (c: Context, rawIds: readonly string[]): Response => {
    // Hono answers HEAD with the GET handler and drops the body: a stream opened for it would be
    // a subscriber nobody reads or cancels.
    if (c.req.method !== 'GET') return refuseMethod(c);
    const checked = checkStreamRequest(rawIds, c.req.header('last-event-id'), hub, parseId);
    if ('error' in checked) return fail(c, checked.error);
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let close = (): void => {};
    const highWaterMark = 1 << 30; // the hub bounds it; the queue's size is only read
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          controller = c;
        },
        cancel: () => close(), // the client left
      },
      new ByteLengthQueuingStrategy({ highWaterMark }),
    );
    let ended = false;
    // On Node (@hono/node-server) the response itself: what the client has not taken shows there.
    const outgoing = nodeResponseOf(c);
    const queued = (): number => highWaterMark - (controller.desiredSize ?? highWaterMark);
    const sink: PushSink = {
      write: (bytes) => {
        if (!ended) controller.enqueue(bytes);
      },
      get bufferedBytes() {
        // The server takes from the queue whenever the socket accepts more, so a queue only stays
        // full behind a socket that does not drain: count it then, and Node's own buffer always.
        if (outgoing === undefined) return queued();
        return outgoing.writableLength + (outgoing.writableNeedDrain ? queued() : 0);
      },
      end: (last) => {
        if (ended) return;
        ended = true;
        if (last !== undefined) controller.enqueue(last);
        controller.close();
      },
      drop: () => {
        if (ended) return;
        ended = true;
        // The connection goes, and its backlog with it.
        if (outgoing !== undefined) outgoing.destroy();
        else controller.error(new Error('subscriber dropped: not reading'));
      },
    };
    const result = hub.subscribe(checked.ids, sink, checked.resumeFrom);
    if ('refused' in result) return fail(c, tooManySubscribers());
    close = () => result.subscription.close();
    return new Response(stream, { status: 200, headers: EVENT_STREAM_HEADERS });
  };
  return new Hono()
    .get('/groups/:id/events', (c) => open(c, [rawSegmentBeforeEvents(c.req.url)]))
    .all('/groups/:id/events', refuseMethod)
    .get('/events', (c) => {
      const raw = rawListParameter(c.req.url, 'groups');
      return raw instanceof ProxyError ? fail(c, raw) : open(c, (raw ?? '').split(','));
    })
    .all('/events', refuseMethod);
}

/** The Node response under a request served by @hono/node-server (`c.env.outgoing`), if any. */
function nodeResponseOf(c: Context): ServerResponse | undefined {
  const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing;
  return outgoing instanceof ServerResponse ? outgoing : undefined;
}

/** The id segment of `/groups/{id}/events` as sent (still percent-encoded: encoded spellings are rejected, as for lookups). */
function rawSegmentBeforeEvents(url: string): string {
  const path = url.slice(0, (url.indexOf('?') + 1 || url.length + 1) - 1);
  const end = path.lastIndexOf('/');
  return path.slice(path.lastIndexOf('/', end - 1) + 1, end);
}
