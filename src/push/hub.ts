import type { CoalescingCache, EngineChange } from '../engine/engine.js';
import { toProxyError } from '../errors.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { clockOption, definedOnly, OptionError, specOption } from '../util/options.js';
import { PUSH_DEFAULTS, PUSH_OPTION_SPECS } from './options.js';
import { comparePositions, type UNAVAILABLE, type FeedChange } from '../shared-tier/contract.js';
import { decodeEventId, encodeEventId, epochTag, vectorOf, type FeedVector } from './event-id.js';
import { eventFrame, HEARTBEAT, retryFrame } from './sse.js';

export { PUSH_DEFAULTS, PUSH_OPTION_SPECS };

/** What the hub needs of an engine. */
export type PushEngine = Pick<
  CoalescingCache<unknown>,
  'get' | 'onChange' | 'feedPositions' | 'oldestPosition' | 'shardOf'
>;

export interface PushHubOptions {
  engine: PushEngine;
  maxSubscribers?: number;
  maxGroups?: number;
  maxBufferedBytes?: number;
  heartbeatMs?: number;
  retryMs?: number;
  /** Time for heartbeats and the fan-out measurement. Default: the system clock. */
  clock?: Clock;
  observer?: PushObserver;
}

/** Hooks for metrics; cheap and never throwing. */
export interface PushObserver {
  /** Events written, by type, and to how many subscribers. */
  pushed?(type: PushEventType, subscribers: number): void;
  /** A subscriber dropped for not reading (`slow`). */
  dropped?(reason: 'slow'): void;
  /** From a change applied here to its event written to the last subscriber, ms. */
  fanout?(ms: number): void;
}

/**
 * `profile`: the current profile (first event, and after a change); `resync`: the current profile when
 * what was missed cannot be told (a position the feed no longer keeps, a flush); `deleted`: data
 * `{"id":"42"}`, the group is gone; `error`: the load failed, data `{"id":"42","code":"…","message":"…"}`.
 */
export type PushEventType = 'profile' | 'resync' | 'deleted' | 'error';

/** Where a subscriber's bytes go: an HTTP response, or a library caller's queue. */
export interface PushSink {
  write(bytes: Buffer): void;
  /** Bytes written but not yet taken by the client. */
  readonly bufferedBytes: number;
  /** Ends the stream, after `last` if given. */
  end(last?: Buffer): void;
  /** Cuts the stream off at once, unsent bytes dropped (a client that does not read). */
  drop(): void;
}

export interface Subscription {
  /** Stops the stream (the client left). Idempotent. */
  close(): void;
}

export type SubscribeResult = { subscription: Subscription } | { refused: 'subscribers' };

interface Subscriber {
  readonly ids: readonly string[];
  readonly sink: PushSink;
  lastWriteAt: number;
  closed: boolean;
}

/** A change applied here, until every event it causes is written. */
interface PendingStep {
  readonly shard: number;
  readonly position: string;
  /** Sends still to write for it. */
  remaining: number;
  done: boolean;
  readonly appliedAt: number;
}

interface QueuedSend {
  readonly type: PushEventType;
  readonly causes: PendingStep[];
}

interface Group {
  readonly subscribers: Set<Subscriber>;
  /** Loads and sends for this group, one after another: events keep the order of changes. */
  chain: Promise<void>;
  /** The broadcast queued and not yet started, which later changes join. */
  queued: QueuedSend | undefined;
}

const OPENED = Buffer.from(': open\n\n');

/** Changes remembered per group for resuming; past it the oldest are forgotten and resumes before them get the current profile. */
const INDEX_LIMIT = 100_000;

/**
 * Live profile updates, HTTP-free (the SSE routes are thin shells over it). Per change, each followed
 * group is loaded once through the engine (coalesced, leased fleet-wide), encoded once, and the same
 * bytes written to every subscriber. One left more than `maxBufferedBytes` unread is dropped.
 */
export class PushHub {
  readonly #engine: PushEngine;
  readonly #o: Required<Omit<PushHubOptions, 'engine' | 'observer' | 'clock'>>;
  readonly #clock: Clock;
  readonly #observer: PushObserver;
  readonly #groups = new Map<string, Group>();
  #count = 0;
  /** Per shard: the position up to which every change has been pushed (event ids are made of these). */
  #watermark: FeedVector;
  /** Per shard: changes applied, in order, and whether their events are out. */
  readonly #pending = new Map<number, PendingStep[]>();
  /** The last change of each group seen here, and per shard where that knowledge starts. */
  readonly #lastChange = new Map<string, { shard: number; position: string }>();
  #indexFrom: FeedVector;
  readonly #unsubscribe: () => void;
  #heartbeat: TimerHandle;
  #closed = false;

  constructor(options: PushHubOptions) {
    const o = { ...PUSH_DEFAULTS, ...definedOnly(options) };
    const S = PUSH_OPTION_SPECS;
    this.#o = {
      maxSubscribers: specOption('maxSubscribers', o.maxSubscribers, S.maxSubscribers),
      maxGroups: specOption('maxGroups', o.maxGroups, S.maxGroups),
      maxBufferedBytes: specOption('maxBufferedBytes', o.maxBufferedBytes, S.maxBufferedBytes),
      heartbeatMs: specOption('heartbeatMs', o.heartbeatMs, S.heartbeatMs),
      retryMs: specOption('retryMs', o.retryMs, S.retryMs),
    };
    this.#engine = options.engine;
    this.#clock = clockOption('clock', o.clock);
    this.#observer = options.observer ?? {};
    this.#watermark = vectorOf(this.#engine.feedPositions());
    this.#indexFrom = new Map(this.#watermark);
    this.#unsubscribe = this.#engine.onChange((event) => this.#onChange(event));
    // One timer for every stream, however many.
    const beat = (): void => {
      this.#beat();
      if (!this.#closed) this.#heartbeat = this.#clock.setTimeout(beat, this.#o.heartbeatMs);
    };
    this.#heartbeat = this.#clock.setTimeout(beat, this.#o.heartbeatMs);
  }

  /** Groups one subscription may follow at most. */
  get maxGroups(): number {
    return this.#o.maxGroups;
  }

  /** True when a subscribe now would be refused (the limit is reached, or the hub closed). */
  get full(): boolean {
    return this.#closed || this.#count >= this.#o.maxSubscribers;
  }

  /** Streams held now. */
  get subscribers(): number {
    return this.#count;
  }

  /** Streams `ids` (valid, distinct, at most `maxGroups`: the caller checks) into `sink`; with `resumeFrom`, only what was missed. */
  subscribe(ids: readonly string[], sink: PushSink, resumeFrom?: FeedVector): SubscribeResult {
    if (this.full) return { refused: 'subscribers' };
    const subscriber: Subscriber = { ids: [...ids], sink, lastWriteAt: this.#clock.now(), closed: false };
    this.#count++;
    // At once, so the client sees the stream open even when it missed nothing.
    sink.write(OPENED);
    for (const id of subscriber.ids) {
      const group = this.#groups.get(id) ?? { subscribers: new Set(), chain: Promise.resolve(), queued: undefined };
      this.#groups.set(id, group);
      group.subscribers.add(subscriber);
    }
    void this.#firstEvents(subscriber, resumeFrom);
    return { subscription: { close: () => this.#remove(subscriber) } };
  }

  /**
   * The same stream for code, until `signal` aborts, the hub closes, or this consumer falls more than
   * `maxBufferedBytes` behind (it throws: resume with the last event's `id`). Throws a TypeError for bad
   * `ids`, an OptionError for a foreign `lastEventId`, an Error when the hub is full.
   */
  async *events(
    ids: readonly string[],
    options: { lastEventId?: string; signal?: AbortSignal } = {},
  ): AsyncGenerator<PushEvent> {
    if (ids.length === 0 || ids.length > this.#o.maxGroups || new Set(ids).size !== ids.length) {
      throw new TypeError(`events() takes 1 to ${this.#o.maxGroups} distinct ids`);
    }
    const resumeFrom = options.lastEventId === undefined ? undefined : decodeEventId(options.lastEventId);
    if (options.lastEventId !== undefined && resumeFrom === undefined)
      throw new OptionError('lastEventId', 'an event id of this hub', options.lastEventId);
    const queue: Buffer[] = [];
    let queued = 0;
    let state = 'open' as 'open' | 'ended' | 'dropped';
    let wake: (() => void) | undefined;
    const notify = (): void => {
      wake?.();
      wake = undefined;
    };
    const sink: PushSink = {
      write: (bytes) => {
        queue.push(bytes);
        queued += bytes.length;
        notify();
      },
      get bufferedBytes() {
        return queued;
      },
      end: () => {
        state = 'ended';
        notify();
      },
      drop: () => {
        state = 'dropped';
        notify();
      },
    };
    const result = this.subscribe(ids, sink, resumeFrom);
    if ('refused' in result) throw new Error('the push hub holds as many subscribers as it may');
    const onAbort = (): void => sink.end();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const bytes = queue.shift();
        if (bytes !== undefined) {
          queued -= bytes.length;
          const event = parseFrame(bytes);
          if (event !== undefined) yield event;
          continue;
        }
        if (state === 'dropped')
          throw new Error('dropped: this consumer fell too far behind; resume with the last event id');
        if (state === 'ended' || options.signal?.aborted === true) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      result.subscription.close();
    }
  }

  /** Ends every stream with a `retry:` hint, so clients reconnect (to another instance). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#clock.clearTimeout(this.#heartbeat);
    const last = retryFrame(this.#o.retryMs);
    for (const group of this.#groups.values()) {
      for (const subscriber of group.subscribers) {
        if (subscriber.closed) continue;
        subscriber.closed = true;
        subscriber.sink.end(last);
      }
    }
    this.#groups.clear();
    this.#count = 0;
  }

  async #firstEvents(subscriber: Subscriber, resumeFrom: FeedVector | undefined): Promise<void> {
    const oldest = new Map<number, Promise<string | undefined | typeof UNAVAILABLE>>();
    for (const id of subscriber.ids) {
      let type: PushEventType | undefined = 'profile';
      if (resumeFrom !== undefined) {
        const shard = this.#engine.shardOf(id);
        const kept = oldest.get(shard) ?? this.#engine.oldestPosition(shard);
        oldest.set(shard, kept);
        type = this.#missed(id, shard, resumeFrom, await kept);
      }
      if (type === undefined || subscriber.closed) continue;
      const group = this.#groups.get(id);
      if (group !== undefined) this.#send(group, id, type, undefined, subscriber);
    }
  }

  /** What a subscriber resuming from `from` missed of group `id`: nothing, its current profile, or a resync. */
  #missed(
    id: string,
    shard: number,
    from: FeedVector,
    oldestKept: string | undefined | typeof UNAVAILABLE,
  ): PushEventType | undefined {
    const theirs = from.get(shard);
    const ours = this.#watermark.get(shard);
    if (theirs === undefined || ours === undefined) return 'profile';
    if (theirs.epoch !== epochTag(ours.epoch)) return 'resync';
    // Left the feed: changes after it may be gone. (Unknown while Redis cannot say: the profile.)
    if (
      typeof oldestKept === 'string' &&
      comparePositions(theirs.position, oldestKept) < 0 &&
      comparePositions(theirs.position, '0-0') > 0
    ) {
      return 'resync';
    }
    const knownFrom = this.#indexFrom.get(shard);
    if (knownFrom === undefined || comparePositions(theirs.position, knownFrom.position) < 0) return 'profile';
    const last = this.#lastChange.get(id);
    return last !== undefined && comparePositions(last.position, theirs.position) > 0 ? 'profile' : undefined;
  }

  #onChange(event: EngineChange): void {
    if (event.type === 'reset') {
      // Anything may have changed unseen: every followed group gets its current profile.
      this.#watermark = vectorOf(this.#engine.feedPositions());
      this.#indexFrom = new Map(this.#watermark);
      this.#lastChange.clear();
      this.#pending.clear();
      for (const [id, group] of this.#groups) this.#send(group, id, 'resync', undefined);
      return;
    }
    if (event.type === 'unfed') {
      // Changed here only, with no place in the feed: this instance's subscribers still hear of it.
      for (const id of event.ids) {
        const group = this.#groups.get(id);
        if (group !== undefined && group.subscribers.size > 0) this.#send(group, id, 'profile', undefined);
      }
      return;
    }
    const change = event.change;
    const { shard, position } = change;
    // Built before the readers had a position: take the epoch now that they have one.
    if ((this.#watermark.get(shard)?.epoch ?? '') === '') {
      const known = vectorOf(this.#engine.feedPositions()).get(shard);
      if (known !== undefined && known.epoch !== '')
        this.#watermark.set(shard, { ...known, position: this.#watermark.get(shard)?.position ?? '0-0' });
    }
    this.#remember(change);
    const step: PendingStep = { shard, position, remaining: 0, done: false, appliedAt: this.#clock.now() };
    const queue = this.#pending.get(shard) ?? [];
    this.#pending.set(shard, queue);
    queue.push(step);
    for (const id of change.ids) {
      const group = this.#groups.get(id);
      if (group === undefined || group.subscribers.size === 0) continue;
      step.remaining++;
      this.#send(group, id, 'profile', step);
    }
    if (step.remaining === 0) this.#finish(step);
  }

  #remember(change: FeedChange): void {
    for (const id of change.ids) {
      this.#lastChange.delete(id); // re-inserted last: the map's order is the forgetting order
      this.#lastChange.set(id, { shard: change.shard, position: change.position });
    }
    while (this.#lastChange.size > INDEX_LIMIT) {
      const [forgotten, { shard, position }] = this.#lastChange.entries().next().value!;
      this.#lastChange.delete(forgotten);
      // What is known of its shard now starts after the forgotten change.
      const from = this.#indexFrom.get(shard);
      if (from !== undefined && comparePositions(position, from.position) > 0)
        this.#indexFrom.set(shard, { ...from, position });
    }
  }

  /** A step's events are all out: the shard's watermark moves past every leading step that is done. */
  #finish(step: PendingStep): void {
    step.done = true;
    const queue = this.#pending.get(step.shard);
    if (queue === undefined) return;
    while (queue.length > 0 && queue[0]!.done) {
      const head = queue.shift()!;
      const current = this.#watermark.get(step.shard);
      // Forward only: a position the watermark passed already says nothing new.
      if (current === undefined || comparePositions(head.position, current.position) > 0) {
        this.#watermark.set(step.shard, {
          epoch: current?.epoch ?? this.#epochOf(step.shard),
          position: head.position,
        });
      }
    }
  }

  #epochOf(shard: number): string {
    return this.#engine.feedPositions().find((p) => p.shard === shard)?.epoch ?? '';
  }

  /**
   * Loads the group after what is queued for it and writes one encoding to `only` (a first event) or to
   * every subscriber. A broadcast not yet started takes in later changes: one queued load per group at most.
   */
  #send(group: Group, id: string, type: PushEventType, cause: PendingStep | undefined, only?: Subscriber): void {
    if (only === undefined && group.queued !== undefined && group.queued.type === type) {
      if (cause !== undefined) group.queued.causes.push(cause);
      return;
    }
    const queued: QueuedSend = { type, causes: cause === undefined ? [] : [cause] };
    if (only === undefined) group.queued = queued;
    group.chain = group.chain
      .then(async () => {
        if (group.queued === queued) group.queued = undefined; // started: later changes queue anew
        let event: PushEventType = queued.type;
        let data: Buffer;
        try {
          const { entry } = await this.#engine.get(id);
          if (entry.kind === 'missing') event = 'deleted';
          data = entry.kind === 'missing' ? Buffer.from(JSON.stringify({ id })) : entry.body;
        } catch (error) {
          const failure = toProxyError(error);
          event = 'error';
          data = Buffer.from(JSON.stringify({ id, code: failure.code, message: failure.message }));
        }
        // The causes are out once this is written (now, synchronously): the id may cover them.
        for (const step of queued.causes) {
          if (--step.remaining > 0) continue;
          this.#finish(step);
          this.#observer.fanout?.(this.#clock.now() - step.appliedAt);
        }
        const frame = eventFrame(encodeEventId(this.#watermark), event, data);
        let written = 0;
        for (const subscriber of only === undefined ? [...group.subscribers] : [only])
          if (this.#write(subscriber, frame)) written++;
        if (written > 0) this.#observer.pushed?.(event, written);
      })
      .catch(() => {}); // never: each step above handles its own failures; the chain must not break
  }

  #write(subscriber: Subscriber, bytes: Buffer): boolean {
    if (subscriber.closed) return false;
    try {
      if (subscriber.sink.bufferedBytes > this.#o.maxBufferedBytes) {
        // Not reading: drop it rather than hold its backlog; it resumes with Last-Event-ID.
        this.#observer.dropped?.('slow');
        this.#remove(subscriber);
        subscriber.sink.drop();
        return false;
      }
      subscriber.sink.write(bytes);
    } catch {
      // A sink that throws is gone: the others of the group go on.
      this.#remove(subscriber);
      return false;
    }
    subscriber.lastWriteAt = this.#clock.now();
    return true;
  }

  #beat(): void {
    const idleSince = this.#clock.now() - this.#o.heartbeatMs;
    const seen = new Set<Subscriber>();
    for (const group of this.#groups.values()) {
      for (const subscriber of group.subscribers) {
        if (seen.has(subscriber)) continue;
        seen.add(subscriber);
        if (subscriber.lastWriteAt <= idleSince) this.#write(subscriber, HEARTBEAT);
      }
    }
  }

  #remove(subscriber: Subscriber): void {
    if (subscriber.closed) return;
    subscriber.closed = true;
    this.#count--;
    for (const id of subscriber.ids) {
      const group = this.#groups.get(id);
      if (group === undefined) continue;
      group.subscribers.delete(subscriber);
      if (group.subscribers.size === 0) this.#groups.delete(id);
    }
  }
}

/** An event as `PushHub.events()` yields it. */
export interface PushEvent {
  type: PushEventType;
  /** The event id: pass it as `lastEventId` to resume. */
  id: string;
  /** The profile, or `{id}` (deleted), or `{id, code, message}` (error). */
  data: unknown;
}

/** One frame the hub wrote, as an event; comments (open, heartbeats) and retry hints are none. */
function parseFrame(bytes: Buffer): PushEvent | undefined {
  const text = bytes.toString('utf8');
  if (!text.startsWith('id: ')) return undefined;
  const [idLine = '', eventLine = '', ...rest] = text.split('\n');
  const data = rest
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice(6))
    .join('\n');
  let parsed: unknown = data;
  try {
    parsed = JSON.parse(data);
  } catch {
    // not JSON (a custom serializer's): handed on as text
  }
  return { id: idLine.slice(4), type: eventLine.slice(7) as PushEventType, data: parsed };
}
