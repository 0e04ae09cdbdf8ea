import type { CoalescingCache, EngineChange } from '../engine/engine.js';
import type { CacheEntry } from '../engine/entry.js';
import { toProxyError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock, type TimerHandle } from '../util/clock.js';
import { clockOption, definedOnly, specOption } from '../util/options.js';
import { PUSH_DEFAULTS, PUSH_OPTION_SPECS } from './options.js';
import { comparePositions, UNAVAILABLE, type FeedChange } from '../util/shared-tier.js';
import { decodeEventId, encodeEventId, epochTag, vectorOf, type FeedVector } from './event-id.js';
import { eventFrame, HEARTBEAT, retryFrame } from './sse.js';

export { PUSH_DEFAULTS, PUSH_OPTION_SPECS };

/** What the hub needs of an engine. */
export type PushEngine = Pick<CoalescingCache<unknown>, 'get' | 'onChange' | 'feedPositions' | 'oldestPosition' | 'shardOf'>;

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
 * - `profile`: the group's current profile (first event, and after a change);
 * - `resync`: the current profile, when what was missed cannot be told (a resumed position the feed
 *   no longer keeps, or a flush);
 * - `deleted`: the group does not exist (anymore); data `{"id":"42"}`;
 * - `error`: the profile could not be loaded; data `{"id":"42","code":"…","message":"…"}`.
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

interface PendingStep {
  readonly position: string;
  done: boolean;
}

interface Group {
  readonly subscribers: Set<Subscriber>;
  /** Loads and sends for this group, one after another: events keep the order of changes. */
  chain: Promise<void>;
}

const OPENED = Buffer.from(': open\n\n');

/** Changes remembered per group for resuming; past it the oldest are forgotten and resumes before them get the current profile. */
const INDEX_LIMIT = 100_000;

/**
 * Live profile updates for subscribers of groups, HTTP-free (the SSE routes
 * and the library's subscribe are thin shells over it). One subscription to
 * the engine's changes; per change, each group with subscribers is loaded
 * once through the engine (coalesced, and one origin call for the fleet
 * through the lease), its event encoded once and the same bytes written to
 * every subscriber. A subscriber that leaves more than `maxBufferedBytes`
 * unread is dropped; one timer writes heartbeats to idle streams.
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
  readonly #lastChange = new Map<string, string>();
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
    this.#clock = o.clock === undefined ? SYSTEM_CLOCK : clockOption('clock', o.clock);
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

  /**
   * Starts a stream of `ids` (valid, distinct, at most `maxGroups`; the caller checks) into `sink`.
   * Without `resumeFrom`, the first event of each group is its current profile; with the vector
   * of a Last-Event-ID, only what was missed since (see PushEventType).
   */
  subscribe(ids: readonly string[], sink: PushSink, resumeFrom?: FeedVector): SubscribeResult {
    if (this.#closed || this.#count >= this.#o.maxSubscribers) return { refused: 'subscribers' };
    const subscriber: Subscriber = { ids: [...ids], sink, lastWriteAt: this.#clock.now(), closed: false };
    this.#count++;
    // At once, so the client sees the stream open even when it missed nothing.
    sink.write(OPENED);
    for (const id of subscriber.ids) {
      let group = this.#groups.get(id);
      if (group === undefined) {
        group = { subscribers: new Set(), chain: Promise.resolve() };
        this.#groups.set(id, group);
      }
      group.subscribers.add(subscriber);
    }
    void this.#firstEvents(subscriber, resumeFrom);
    return { subscription: { close: () => this.#remove(subscriber) } };
  }

  /**
   * The same stream for code: the events of `ids` as they come, until `signal` aborts, the hub
   * closes or this consumer falls more than `maxBufferedBytes` behind (then it throws; resume with
   * the last event's `id`). Throws a TypeError for ids over `maxGroups`, and an Error when the hub
   * holds as many subscribers as it may.
   */
  async *events(ids: readonly string[], options: { lastEventId?: string; signal?: AbortSignal } = {}): AsyncGenerator<PushEvent> {
    if (ids.length === 0 || ids.length > this.#o.maxGroups || new Set(ids).size !== ids.length) {
      throw new TypeError(`events() takes 1 to ${this.#o.maxGroups} distinct ids`);
    }
    const resumeFrom = options.lastEventId === undefined ? undefined : decodeEventId(options.lastEventId);
    if (options.lastEventId !== undefined && resumeFrom === undefined) throw new TypeError('lastEventId is not an event id of this hub');
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
        if (state === 'dropped') throw new Error('dropped: this consumer fell too far behind; resume with the last event id');
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
      if (group !== undefined) this.#enqueue(group, id, type, new Set([subscriber]));
    }
  }

  /** What a subscriber resuming from `from` missed of group `id`: nothing, its current profile, or a resync. */
  #missed(id: string, shard: number, from: FeedVector, oldestKept: string | undefined | typeof UNAVAILABLE): PushEventType | undefined {
    const theirs = from.get(shard);
    const ours = this.#watermark.get(shard);
    if (theirs === undefined || ours === undefined) return 'profile';
    if (theirs.epoch !== epochTag(ours.epoch)) return 'resync';
    // Left the feed: changes after it may be gone. (Unknown while Redis cannot say: the profile.)
    if (typeof oldestKept === 'string' && comparePositions(theirs.position, oldestKept) < 0 && comparePositions(theirs.position, '0-0') > 0) {
      return 'resync';
    }
    const knownFrom = this.#indexFrom.get(shard);
    if (knownFrom === undefined || comparePositions(theirs.position, knownFrom.position) < 0) return 'profile';
    const last = this.#lastChange.get(id);
    return last !== undefined && comparePositions(last, theirs.position) > 0 ? 'profile' : undefined;
  }

  #onChange(event: EngineChange): void {
    if (event.type === 'reset') {
      // Anything may have changed unseen: every followed group gets its current profile.
      this.#watermark = vectorOf(this.#engine.feedPositions());
      this.#indexFrom = new Map(this.#watermark);
      this.#lastChange.clear();
      this.#pending.clear();
      for (const [id, group] of this.#groups) this.#enqueue(group, id, 'resync', group.subscribers);
      return;
    }
    const change = event.change;
    this.#remember(change);
    const step: PendingStep = { position: change.position, done: false };
    let queue = this.#pending.get(change.shard);
    if (queue === undefined) {
      queue = [];
      this.#pending.set(change.shard, queue);
    }
    queue.push(step);
    const appliedAt = this.#clock.now();
    const sends: Promise<void>[] = [];
    for (const id of change.ids) {
      const group = this.#groups.get(id);
      if (group !== undefined && group.subscribers.size > 0) sends.push(this.#enqueue(group, id, 'profile', group.subscribers, { shard: change.shard, step }));
    }
    const finish = (): void => {
      step.done = true;
      this.#advance(change.shard);
    };
    if (sends.length === 0) {
      finish();
      return;
    }
    void Promise.all(sends).then(() => {
      finish();
      this.#observer.fanout?.(this.#clock.now() - appliedAt);
    });
  }

  #remember(change: FeedChange): void {
    for (const id of change.ids) {
      this.#lastChange.delete(id); // re-inserted last: the map's order is the forgetting order
      this.#lastChange.set(id, change.position);
    }
    while (this.#lastChange.size > INDEX_LIMIT) {
      const [forgotten, position] = this.#lastChange.entries().next().value as [string, string];
      this.#lastChange.delete(forgotten);
      const from = this.#indexFrom.get(change.shard);
      if (from !== undefined && comparePositions(position, from.position) > 0) this.#indexFrom.set(change.shard, { ...from, position });
    }
  }

  /** Moves a shard's watermark past every change whose events are all out, in order. */
  #advance(shard: number): void {
    const queue = this.#pending.get(shard);
    if (queue === undefined) return;
    const epoch = this.#watermark.get(shard)?.epoch ?? this.#epochOf(shard);
    while (queue.length > 0 && queue[0]!.done) this.#watermark.set(shard, { epoch, position: queue.shift()!.position });
  }

  /**
   * The event id of an event: the watermark, and when every earlier change of the cause's shard is
   * out, the cause's own position (a client holding it has every event up to it).
   */
  #positionsFor(cause: { shard: number; step: PendingStep } | undefined): FeedVector {
    if (cause === undefined || this.#pending.get(cause.shard)?.[0] !== cause.step) return this.#watermark;
    const vector = new Map(this.#watermark);
    vector.set(cause.shard, { epoch: this.#watermark.get(cause.shard)?.epoch ?? this.#epochOf(cause.shard), position: cause.step.position });
    return vector;
  }

  #epochOf(shard: number): string {
    return this.#engine.feedPositions().find((p) => p.shard === shard)?.epoch ?? '';
  }

  /** Loads the group once, after what is queued for it, and writes one encoding of its event to `to`. */
  #enqueue(group: Group, id: string, type: PushEventType, to: ReadonlySet<Subscriber>, cause?: { shard: number; step: PendingStep }): Promise<void> {
    const recipients = to === group.subscribers ? undefined : [...to];
    const next = group.chain.then(async () => {
      let event: PushEventType = type;
      let data: Buffer;
      try {
        const { entry } = await this.#engine.get(id);
        if (entry.kind === 'missing') {
          event = 'deleted';
          data = Buffer.from(JSON.stringify({ id }));
        } else {
          data = profileData(entry);
        }
      } catch (error) {
        const failure = toProxyError(error);
        event = 'error';
        data = Buffer.from(JSON.stringify({ id, code: failure.code, message: failure.message }));
      }
      const frame = eventFrame(encodeEventId(this.#positionsFor(cause)), event, data);
      let written = 0;
      for (const subscriber of recipients ?? group.subscribers) if (this.#write(subscriber, frame)) written++;
      if (written > 0) this.#observer.pushed?.(event, written);
    });
    group.chain = next;
    return next;
  }

  #write(subscriber: Subscriber, bytes: Buffer): boolean {
    if (subscriber.closed) return false;
    if (subscriber.sink.bufferedBytes > this.#o.maxBufferedBytes) {
      // Not reading: drop it rather than hold its backlog; it resumes with Last-Event-ID.
      this.#observer.dropped?.('slow');
      this.#remove(subscriber);
      subscriber.sink.drop();
      return false;
    }
    subscriber.sink.write(bytes);
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

function profileData(entry: CacheEntry<unknown>): Buffer {
  return entry.body;
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
  const [idLine = '', eventLine = '', dataLine = ''] = text.split('\n');
  return { id: idLine.slice(4), type: eventLine.slice(7) as PushEventType, data: JSON.parse(dataLine.slice(6)) as unknown };
}
