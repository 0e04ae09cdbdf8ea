import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CANONICAL_GROUP_ID } from '../shared-tier/contract.js';
import { ProxyError } from '../errors.js';
import { NOT_FOUND, definedOnly, type LoadContext, type NotFound } from '../engine/options.js';
import type { BatchResult } from './batch-loader.js';
import { LoopStall } from '../util/loop-stall.js';
import { defaultsOf, integerSpec, specOption, urlOption } from '../util/options.js';

/** A group profile as the upstream returns it: any JSON object. */
export type GroupProfile = Record<string, unknown>;

/** Ids one page of the upstream's id export asks for. */
const ID_EXPORT_PAGE = 10_000;

export interface HttpOriginOptions {
  /** Base URL of the group-profile service; profiles are at `{url}/groups/{id}`. Required. */
  url: string;
  /**
   * Deadline for the upstream's whole response (headers and body), ms, counted from when the request has a
   * connection; time the proxy's own event loop was stalled meanwhile is not counted (up to tenfold). Default 2000.
   */
  timeoutMs?: number;
  /** Largest accepted body, bytes; bigger answers are an error. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Keep-alive connections to the upstream at most (at least the concurrency ceiling). Default 1000. */
  connections?: number;
  /** How long an idle upstream connection is kept, ms. Default 10000. */
  keepAliveTimeoutMs?: number;
}

/** Default and range of every numeric option, declared once (the sidecar's settings read them too). */
export const HTTP_ORIGIN_OPTION_SPECS = {
  timeoutMs: integerSpec(2000, 1, 600_000),
  maxBodyBytes: integerSpec(1024 * 1024, 1, 64 * 1024 * 1024),
  connections: integerSpec(1000, 1, 100_000),
  keepAliveTimeoutMs: integerSpec(10_000, 1, 600_000),
} as const;

export const HTTP_ORIGIN_DEFAULTS = defaultsOf(HTTP_ORIGIN_OPTION_SPECS);

/**
 * The group-profile service over HTTP, with Node's own client (undici from npm would be a second copy, ~8 MB
 * resident). Only fixed, proxy-owned headers go upstream, never a client's (Authorization, Cookie, ...): a
 * cached profile can never carry one user's data to another.
 */
export class HttpOrigin {
  readonly #agent: HttpAgent;
  readonly #send: (options: RequestOptions, onResponse: (response: IncomingMessage) => void) => ClientRequest;
  readonly #target: { protocol: string; hostname: string; port: string };
  readonly #basePath: string;
  readonly #timeoutMs: number;
  readonly #maxBodyBytes: number;
  readonly #loop = new LoopStall();
  readonly url: string;

  constructor(options: HttpOriginOptions) {
    const o = { ...HTTP_ORIGIN_DEFAULTS, ...definedOnly(options) };
    const url = urlOption('url', o.url, ['http:', 'https:']);
    const S = HTTP_ORIGIN_OPTION_SPECS;
    this.#timeoutMs = specOption('timeoutMs', o.timeoutMs, S.timeoutMs);
    this.#maxBodyBytes = specOption('maxBodyBytes', o.maxBodyBytes, S.maxBodyBytes);
    const connections = specOption('connections', o.connections, S.connections);
    const keepAliveTimeout = specOption('keepAliveTimeoutMs', o.keepAliveTimeoutMs, S.keepAliveTimeoutMs);
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.url = url.origin + this.#basePath;
    const secure = url.protocol === 'https:';
    // `timeout` closes a keep-alive connection idle that long; in-flight requests have their own deadline.
    const agentOptions = {
      keepAlive: true,
      maxSockets: connections,
      maxFreeSockets: connections,
      timeout: keepAliveTimeout,
      scheduling: 'lifo' as const,
    };
    this.#agent = secure ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.#send = secure ? httpsRequest : httpRequest;
    // URL keeps IPv6 literals bracketed; Node's client wants them bare.
    this.#target = { protocol: url.protocol, hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port };
  }

  /** Loads one profile: the object, NOT_FOUND on 404, or a ProxyError for anything else. */
  readonly load = async (id: string, context: LoadContext): Promise<GroupProfile | NotFound> => {
    const body = await this.#request(`${this.#basePath}/groups/${id}`, context.signal);
    if (body === NOT_FOUND) return NOT_FOUND;
    const profile = parseObject(body);
    const wrongId = idMismatch(id, profile);
    if (wrongId !== undefined) throw wrongId;
    return profile;
  };

  /** `GET {url}/groups?ids=1,2,3`, answering an object from id to profile or `null`; any other value fails that id alone. */
  readonly loadMany = async (ids: readonly string[], context: LoadContext): Promise<BatchResult<GroupProfile>> => {
    const body = await this.#request(`${this.#basePath}/groups?ids=${ids.join(',')}`, context.signal, ids.length);
    if (body === NOT_FOUND) throw new UpstreamStatusError(404, 'upstream has no batch endpoint (404 on /groups?ids=)');
    const answer = parseObject(body);
    const results: BatchResult<GroupProfile> = new Map();
    for (const id of ids) {
      if (!Object.hasOwn(answer, id)) continue;
      const value = answer[id];
      if (value === null) results.set(id, NOT_FOUND);
      else if (typeof value === 'object' && !Array.isArray(value))
        results.set(id, idMismatch(id, value as GroupProfile) ?? (value as GroupProfile));
      else
        results.set(
          id,
          new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream batch answer for ${id} is not a JSON object or null`),
        );
    }
    return results;
  };

  /**
   * One page of the id export, for the existence filter: `GET {url}/group-ids?limit=N[&after=id]` answering
   * `{"ids":[1,2,…],"next":"2"|null}`, ids ascending. Anything else is a ProxyError (the filter stays as it was).
   */
  readonly exportIds = async (
    after: string | undefined,
    signal: AbortSignal,
    limit = ID_EXPORT_PAGE,
  ): Promise<{ ids: string[]; next: string | undefined }> => {
    const query = after === undefined ? `limit=${limit}` : `limit=${limit}&after=${after}`;
    // An id is ~10 bytes: a page is far smaller than the batch answers the body bound is scaled for.
    const body = await this.#request(`${this.#basePath}/group-ids?${query}`, signal, Math.ceil(limit / 100));
    if (body === NOT_FOUND) throw new ProxyError('UPSTREAM_STATUS', 'upstream has no id export (404 on /group-ids)');
    const answer = parseObject(body);
    const bad = (why: string): ProxyError => new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream id export: ${why}`);
    if (!Array.isArray(answer.ids) || answer.ids.length > limit)
      throw bad(`ids must be an array of at most ${limit} group ids`);
    const ids = answer.ids.map((id: unknown) => (typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id));
    for (const id of ids)
      if (typeof id !== 'string' || !CANONICAL_GROUP_ID.test(id)) throw bad(`${JSON.stringify(id)} is not a group id`);
    const rawNext = typeof answer.next === 'number' ? String(answer.next) : answer.next;
    if (rawNext !== null && (typeof rawNext !== 'string' || !CANONICAL_GROUP_ID.test(rawNext)))
      throw bad('next must be a group id or null');
    return { ids: ids as string[], next: rawNext ?? undefined };
  };

  async close(): Promise<void> {
    this.#agent.destroy();
  }

  /** `bodyScale`: a batch answer may be as large as that many profiles. */
  async #request(path: string, callerSignal: AbortSignal, bodyScale = 1): Promise<Buffer | NotFound> {
    const maxBodyBytes = Math.min(this.#maxBodyBytes * bodyScale, 256 * 1024 * 1024);
    // One controller per request, not AbortSignal.any([callerSignal, ...]): Node keeps every signal
    // combined with a long-lived one (the engine's) reachable from it, a leak of ~100 bytes per call.
    const controller = new AbortController();
    const deadline: Deadline = { timer: undefined, stallAtStart: 0, extendedMs: 0, timedOut: false, settled: false };
    this.#loop.acquire();
    const onCallerAbort = (): void => controller.abort(callerSignal.reason);
    if (callerSignal.aborted) onCallerAbort();
    else callerSignal.addEventListener('abort', onCallerAbort, { once: true });
    try {
      return await this.#exchange(path, controller, deadline, callerSignal, maxBodyBytes);
    } finally {
      deadline.settled = true;
      clearTimeout(deadline.timer);
      this.#loop.release();
      callerSignal.removeEventListener('abort', onCallerAbort);
    }
  }

  /**
   * Starts the deadline once the request has a connection (waiting for a pooled socket is the proxy's time).
   * When it fires, time the event loop was stalled meanwhile is given back first, up to tenfold; then the abort
   * waits one turn (setImmediate runs after the poll phase), so an answer already received is read first.
   */
  #startDeadline(controller: AbortController, deadline: Deadline): void {
    if (deadline.timer !== undefined || deadline.settled) return;
    deadline.stallAtStart = this.#loop.stalledMs();
    const check = (): void => {
      if (deadline.settled) return;
      const owed = this.#loop.stalledMs() - deadline.stallAtStart - deadline.extendedMs;
      const room = MAX_STALL_EXTENSION * this.#timeoutMs - deadline.extendedMs;
      if (owed >= 1 && room >= 1) {
        const extension = Math.min(owed, room);
        deadline.extendedMs += extension;
        deadline.timer = setTimeout(check, extension);
        return;
      }
      setImmediate(() => {
        if (deadline.settled) return;
        deadline.timedOut = true;
        controller.abort(new Error('upstream timeout'));
      });
    };
    deadline.timer = setTimeout(check, this.#timeoutMs);
  }

  async #exchange(
    path: string,
    controller: AbortController,
    deadline: Deadline,
    callerSignal: AbortSignal,
    maxBodyBytes: number,
  ): Promise<Buffer | NotFound> {
    let response: IncomingMessage;
    try {
      response = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = this.#send(
          {
            ...this.#target,
            agent: this.#agent,
            path,
            method: 'GET',
            headers: { accept: 'application/json', 'user-agent': 'group-profile-proxy' },
            signal: controller.signal,
          },
          resolve,
        );
        request.once('socket', () => this.#startDeadline(controller, deadline));
        request.once('error', reject);
        request.end();
      });
    } catch (error) {
      throw this.#failure(error, deadline, callerSignal);
    }
    const statusCode = response.statusCode ?? 0;
    if (statusCode !== 200) {
      await discard(response);
      if (statusCode === 404) return NOT_FOUND;
      throw new UpstreamStatusError(statusCode, `upstream answered ${statusCode}`);
    }
    const declared = Number(response.headers['content-length']);
    if (declared > maxBodyBytes) {
      response.destroy();
      throw oversized(maxBodyBytes);
    }
    try {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBodyBytes) {
          response.destroy();
          throw oversized(maxBodyBytes);
        }
        chunks.push(chunk);
      }
      if (!response.complete) throw new Error('upstream closed the connection before the end of the body');
      return Buffer.concat(chunks, size);
    } catch (error) {
      if (error instanceof ProxyError) throw error;
      throw this.#failure(error, deadline, callerSignal);
    }
  }

  #failure(error: unknown, deadline: Deadline, callerSignal: AbortSignal): ProxyError {
    if (callerSignal.aborted && callerSignal.reason instanceof ProxyError) return callerSignal.reason;
    if (deadline.timedOut) {
      return new ProxyError('UPSTREAM_TIMEOUT', `upstream did not answer within ${this.#timeoutMs} ms`, {
        cause: error,
      });
    }
    const reason = error instanceof Error ? error.message : String(error);
    return new ProxyError('UPSTREAM_UNREACHABLE', `upstream request failed: ${reason}`, { cause: error });
  }
}

/** A stalled event loop lengthens an upstream deadline at most this many times the timeout. */
const MAX_STALL_EXTENSION = 10;

/** The upstream deadline of one request. */
interface Deadline {
  timer: NodeJS.Timeout | undefined;
  /** The loop's summed stall when the deadline started, and how much of the stall since has been given back. */
  stallAtStart: number;
  extendedMs: number;
  /** The deadline passed with the answer still incomplete. */
  timedOut: boolean;
  /** The exchange is over; a pending abort must do nothing. */
  settled: boolean;
}

/** Reads a body to its end so the connection goes back to the pool; a large one closes the connection instead. */
async function discard(response: IncomingMessage): Promise<void> {
  let size = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > 64 * 1024) return void response.destroy();
    }
  } catch {
    // The connection is gone; nothing to give back.
  }
}

function oversized(limit: number): ProxyError {
  return new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream body exceeds ${limit} bytes`);
}

/**
 * A profile naming another group must never be cached under this one (nor kept as its stale fallback): an `id`
 * in the body, number or string, must be the one asked for, in the same canonical decimal spelling.
 */
function idMismatch(requested: string, profile: GroupProfile): ProxyError | undefined {
  if (!Object.hasOwn(profile, 'id')) return undefined;
  const id = profile.id;
  if ((typeof id === 'number' || typeof id === 'string') && String(id) === requested) return undefined;
  const shown = JSON.stringify(id)?.slice(0, 40) ?? String(id);
  return new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream answered the profile of id ${shown} for group ${requested}`);
}

/** An upstream answer with a status other than 200 or 404 (or a 404 where an answer was due): UPSTREAM_STATUS. */
export class UpstreamStatusError extends ProxyError {
  constructor(
    readonly upstreamStatus: number,
    message: string,
  ) {
    super('UPSTREAM_STATUS', message);
  }
}

/** Statuses by which a server says it has no such route or does not take the request: not a failure of its own. */
const NO_ROUTE_STATUSES = new Set([400, 404, 405, 501]);

/**
 * Whether a failed batch call says the upstream does not serve the batch route (no such route, a request it does
 * not take, or an answer that is not a batch answer), rather than that it is failing (5xx, timeouts, refusals).
 */
export function meansNoBatchRoute(error: unknown): boolean {
  if (error instanceof UpstreamStatusError) return NO_ROUTE_STATUSES.has(error.upstreamStatus);
  return error instanceof ProxyError && error.code === 'UPSTREAM_BAD_RESPONSE';
}

function parseObject(body: Buffer): GroupProfile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ProxyError('UPSTREAM_BAD_RESPONSE', 'upstream body is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ProxyError('UPSTREAM_BAD_RESPONSE', 'upstream body is not a JSON object');
  }
  return parsed as GroupProfile;
}
