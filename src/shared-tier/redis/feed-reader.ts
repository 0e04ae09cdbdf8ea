import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Clock, TimerHandle } from '../../util/clock.js';
import type { FeedResetReason, TierEvent } from '../contract.js';
import { decodeChange, decodeHint, type SkipReason } from './feed-entries.js';
import type { FeedShardKeys } from './feed-keys.js';

export type FeedReadReply = [
  status: string,
  epoch: string,
  last: string,
  added: number,
  changes: unknown[],
  hintPosition: string,
  hints: unknown[],
  length?: number,
];

/** A connection dedicated to one shard's blocking reads, with the read script defined on it. */
export type FeedConnection = Redis & {
  gppFeedRead(
    changes: string,
    hints: string,
    epoch: string,
    position: string,
    knownEpoch: string,
    ordinal: number,
    batch: number,
    freshEpoch: string,
    hintPosition: string,
  ): Promise<FeedReadReply>;
};

export interface ShardReaderOptions {
  keys: FeedShardKeys;
  /** Opens the shard's connection (again after a MOVED or a stuck read, so a Cluster reader follows its slot). */
  connect(movedTo: string | undefined): FeedConnection;
  instanceId: string;
  clock: Clock;
  /** How long one blocking read waits for news, ms; also how often an idle reader proves it is alive. */
  blockMs: number;
  /** Past this beyond `blockMs`, a read that has not answered counts as stuck and its connection is replaced, ms. */
  stuckMs: number;
  batch: number;
  isValidKey(key: string): boolean;
  emit(event: TierEvent): void;
  /** Log-worthy moments: a reset, a resume after a lost connection, a skipped entry. */
  notice?(notice: FeedNotice): void;
  /** A read reached Redis (the tier counts that as Redis answering). */
  onRead?(): void;
}

export type FeedNotice =
  | { type: 'reset'; shard: number; reason: FeedResetReason }
  | { type: 'resumed'; shard: number; replayed: number }
  | { type: 'skipped'; shard: number; reason: SkipReason; position: string }
  | { type: 'read-failed'; shard: number; error: Error };

class StuckRead extends Error {}

/**
 * Reads one feed shard from its own position on a connection of its own (XREAD BLOCK, no consumer group: every
 * instance sees every entry). Before each wait, FEED_READ reads what is new and checks the position can still be
 * replayed; after a lost connection the reader resumes from it, or emits a reset when it cannot.
 */
export class ShardReader {
  readonly #o: ShardReaderOptions;
  #connection: FeedConnection | undefined;
  #position = '';
  #epoch = '';
  #ordinal = 0;
  #hintPosition = '';
  #lastReadAt: number;
  #lagEntries = 0;
  /** Set by a failed read: what the next reads find was missed while the connection was down. */
  #lost = false;
  #replayed = 0;
  #stopped = false;
  #movedTo: string | undefined;
  #wake: (() => void) | undefined;
  readonly skipped = new Map<SkipReason, number>();
  /** Commands this reader sent (reads and blocking waits): each is a round trip to Redis. */
  reads = 0;
  resumes = 0;
  readonly done: Promise<void>;

  constructor(options: ShardReaderOptions) {
    this.#o = options;
    this.#lastReadAt = options.clock.now();
    this.done = this.#run();
  }

  /** When the last read that reached the shard began, on the reader's clock. */
  get lastReadAt(): number {
    return this.#lastReadAt;
  }

  get lagEntries(): number {
    return this.#lagEntries;
  }

  /** The epoch of the stream as last read (`''` before the first read). */
  get epoch(): string {
    return this.#epoch;
  }

  /** The reader's position (`''` before its first read). */
  get position(): string {
    return this.#position;
  }

  /** The connection now in use, for tests that kill it. */
  get connection(): FeedConnection | undefined {
    return this.#connection;
  }

  /** Ends the loop and closes the connection; resolves once the loop returned. */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#connection?.disconnect();
    this.#wake?.();
    return this.done;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      try {
        this.#connection ??= this.#o.connect(this.#movedTo);
        const more = await this.#readOnce(this.#connection);
        failures = 0;
        if (!more && !this.#stopped) await this.#wait(this.#connection);
      } catch (error) {
        if (this.#stopped) break;
        failures++;
        this.#lost = true;
        const failure = error instanceof Error ? error : new Error(String(error));
        this.#o.notice?.({ type: 'read-failed', shard: this.#o.keys.shard, error: failure });
        const moved = /^MOVED \d+ (\S+)/.exec(failure.message)?.[1];
        if (moved !== undefined || failure instanceof StuckRead) {
          // A stuck connection may still hold a blocked read; a moved slot lives elsewhere now.
          this.#movedTo = moved;
          this.#connection?.disconnect();
          this.#connection = undefined;
        }
        await this.#sleep(Math.min(50 * failures, 1000));
      }
    }
  }

  /** Reads and emits what is new; true when a batch came back full (read again at once). */
  async #readOnce(connection: FeedConnection): Promise<boolean> {
    const o = this.#o;
    const k = o.keys;
    const startedAt = o.clock.now();
    this.reads++;
    const reply = await this.#deadline(
      connection.gppFeedRead(
        k.changes,
        k.hints,
        k.epoch,
        this.#position,
        this.#epoch,
        this.#ordinal,
        o.batch,
        randomUUID(),
        this.#hintPosition,
      ),
    );
    if (this.#stopped) return false;
    const [status, epoch, last, added, changes, hintPosition, hints, length = 0] = reply;
    this.#hintPosition = hintPosition;
    if (status === 'start') {
      this.#lastReadAt = startedAt;
      this.#adopt(epoch, last, added);
      if (this.#lost) {
        // Serving went on before the feed could be read: changes appended meanwhile are unknown.
        this.#lost = false;
        o.notice?.({ type: 'reset', shard: k.shard, reason: 'joined' });
        o.emit({ type: 'reset', reason: 'joined', shard: k.shard });
      }
      return false;
    }
    if (status === 'epoch' || status === 'trimmed') {
      // Read what the stream still keeps (after a restart, all it holds is what came since): the
      // flush covers this instance's L1, and applying those entries deletes the shared copies
      // they changed, which no instance may have done yet.
      this.#adopt(epoch, '0-0', status === 'epoch' ? 0 : added - length);
      this.#lost = false;
      o.notice?.({ type: 'reset', shard: k.shard, reason: status });
      o.emit({ type: 'reset', reason: status, shard: k.shard });
      return true;
    }
    for (const entry of changes) this.#applyEntry(entry);
    for (const entry of hints) {
      const hint = Array.isArray(entry) ? decodeHint(entry[1]) : undefined;
      if (Array.isArray(entry) && typeof entry[0] === 'string') this.#hintPosition = entry[0];
      if (hint !== undefined && hint.from !== o.instanceId) o.emit(hint);
    }
    this.#lagEntries = Math.max(0, added - this.#ordinal);
    const more = changes.length >= o.batch || hints.length >= o.batch;
    // Changes are known up to this read only once it reached the end: a long replay still lags.
    if (!more) this.#lastReadAt = startedAt;
    o.onRead?.();
    if (!more && this.#lost) {
      this.#lost = false;
      this.resumes++;
      o.notice?.({ type: 'resumed', shard: k.shard, replayed: this.#replayed });
      this.#replayed = 0;
    }
    return more;
  }

  #applyEntry(entry: unknown): void {
    const o = this.#o;
    const [position, fields] = Array.isArray(entry) ? (entry as unknown[]) : [];
    this.#ordinal++;
    if (typeof position === 'string') this.#position = position;
    const decoded = decodeChange(position, fields, o.keys.shard, o.isValidKey, this.#lost);
    if ('skipped' in decoded) {
      this.#skip(decoded.skipped, String(position));
      return;
    }
    if (decoded.droppedIds > 0) this.#skip('bad_ids', decoded.change.position);
    if (this.#lost) this.#replayed++;
    // Own changes too (the producer has applied them already, but learns their order here).
    o.emit({ type: 'change', change: decoded.change });
  }

  #skip(reason: SkipReason, position: string): void {
    this.skipped.set(reason, (this.skipped.get(reason) ?? 0) + 1);
    this.#o.notice?.({ type: 'skipped', shard: this.#o.keys.shard, reason, position });
  }

  #adopt(epoch: string, position: string, ordinal: number): void {
    this.#epoch = epoch;
    this.#position = position;
    this.#ordinal = ordinal;
    this.#lagEntries = 0;
  }

  async #wait(connection: FeedConnection): Promise<void> {
    const k = this.#o.keys;
    this.reads++;
    await this.#deadline(
      connection.xread('BLOCK', this.#o.blockMs, 'STREAMS', k.changes, k.hints, this.#position, this.#hintPosition),
      this.#o.blockMs,
    );
  }

  /** `operation`, or a StuckRead once it took `extraMs` plus the stuck allowance. */
  #deadline<T>(operation: Promise<T>, extraMs = 0): Promise<T> {
    const { clock, keys, stuckMs } = this.#o;
    let timer: TimerHandle | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = clock.setTimeout(
        () => reject(new StuckRead(`feed read on shard ${keys.shard} did not answer`)),
        extraMs + stuckMs,
      );
    });
    return Promise.race([operation, stuck]).finally(() => clock.clearTimeout(timer));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#o.clock.setTimeout(() => this.#wake?.(), ms);
      this.#wake = () => {
        this.#wake = undefined;
        this.#o.clock.clearTimeout(timer);
        resolve();
      };
    });
  }
}
