import { rawListParameter } from './multi-get.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PushHub, PushSink } from '../push/hub.js';
import { ProxyError, toProxyError } from '../errors.js';
import { checkStreamRequest, EVENT_STREAM_HEADERS, tooManySubscribers, type StreamRequest } from './events.js';
import { encodeError } from './respond.js';

const SINGLE = /^\/groups\/([^/?]+)\/events(?:\?|$)/;

/**
 * The event-stream routes straight on Node's response, for the sidecar: the Hono routes' checks and hub,
 * without a ReadableStream, Request or context held per stream (docs/performance.md). False for anything
 * else, other methods included. `onError` is told of a throwing `parseId`, answered 500 as by Hono.
 */
export function createEventsFastPath(
  hub: PushHub,
  parseId: (raw: string) => string | undefined,
  cacheName: string,
  onError?: (error: unknown, method: string, target: string) => void,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url;
    if (req.method !== 'GET' || url === undefined) return false;
    let rawIds: string[] | ProxyError;
    const single = SINGLE.exec(url);
    if (single !== null) rawIds = [single[1]!];
    else if (url === '/events' || url.startsWith('/events?')) {
      const raw = rawListParameter(url, 'groups');
      rawIds = raw instanceof ProxyError ? raw : (raw ?? '').split(',');
    } else return false;
    const lastEventId = req.headers['last-event-id'];
    let checked: StreamRequest;
    try {
      checked =
        rawIds instanceof ProxyError
          ? { error: rawIds }
          : checkStreamRequest(rawIds, typeof lastEventId === 'string' ? lastEventId : undefined, hub, parseId);
    } catch (error) {
      // Only a parseId of the embedder's can throw: reported and answered as the Hono app's onError would.
      onError?.(error, req.method, url);
      checked = { error: toProxyError(error) };
    }
    if ('error' in checked || hub.full) {
      const answer = encodeError('error' in checked ? checked.error : tooManySubscribers(), cacheName);
      res.writeHead(answer.status, answer.headers).end(answer.body);
      return true;
    }
    res.writeHead(200, EVENT_STREAM_HEADERS);
    const sink: PushSink = {
      write: (bytes) => void res.write(bytes),
      get bufferedBytes() {
        return res.writableLength;
      },
      end: (last) => void res.end(last),
      drop: () => void res.destroy(),
    };
    const result = hub.subscribe(checked.ids, sink, checked.resumeFrom);
    if ('refused' in result)
      res.end(); // the hub closed in between
    else res.on('close', () => result.subscription.close());
    return true;
  };
}
