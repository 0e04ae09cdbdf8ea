import { randomUUID } from 'node:crypto';
import type { Clock, TimerHandle } from '../util/clock.js';
import {
  clockOption,
  defaultsOf,
  definedOnly,
  fractionSpec,
  functionOption,
  integerSpec,
  OptionError,
  specOption,
} from '../util/options.js';
import { UNAVAILABLE, type FleetBitmaps } from '../shared-tier/contract.js';
import { BloomBits, bloomPositions, bloomShape, falsePositiveRateOf, type BloomShape } from './bloom.js';

/** One page of the upstream's id export: ids in ascending order, and where the next page starts (`undefined` after the last). */
export interface IdPage {
  ids: readonly string[];
  next: string | undefined;
}

/** Reads one page of the export, from the start (`after` undefined) or after the id `after`. */
export type ExportIds = (after: string | undefined, signal: AbortSignal) => Promise<IdPage>;

/** What the filter says of an id: `absent` only once it is authoritative (filled from a complete export). */
export type ExistenceVerdict = 'maybe' | 'absent';

/** Default and range of every numeric option, declared once (the sidecar's settings read them too). */
export const EXISTENCE_FILTER_OPTION_SPECS = {
  expectedIds: integerSpec(10_000_000, 1000, 500_000_000),
  falsePositiveRate: fractionSpec(0.01, 0.000_001, 0.5),
  refreshMs: integerSpec(3_600_000, 10_000, 7 * 86_400_000),
  /** How often an instance looks at the fleet's filter state in Redis (a new generation, its fill), ms. */
  syncMs: integerSpec(5000, 100, 600_000),
} as const;

export const EXISTENCE_FILTER_DEFAULTS = defaultsOf(EXISTENCE_FILTER_OPTION_SPECS);

export interface ExistenceFilterOptions {
  /** Groups the filter is sized for; past it the false-positive rate rises. Default 10,000,000 (12 MB at 1 %). */
  expectedIds?: number;
  /** False-positive rate at `expectedIds`: the share of absent ids that still reach the origin. Default 0.01. */
  falsePositiveRate?: number;
  /**
   * The upstream's paged id export: filled from it, the filter is authoritative (a rejected id is answered absent,
   * no origin call). Without it, it learns ids from upstream answers and only observes. Default: none.
   */
  exportIds?: ExportIds;
  /** How often the filter is rebuilt from the export (groups deleted since drop out), ms. Default 3600000. */
  refreshMs?: number;
  /** With a shared tier: how often the fleet's filter state is read, ms. Default 5000. */
  syncMs?: number;
  /** The fleet's filter lives in this tier's bitmaps (one fill for the fleet); without it, in memory. Default: none. */
  l2?: FleetBitmaps;
  /** Time of refreshes and syncs. Default: the system clock. */
  clock?: Clock;
  /** Told of every fill (ids, ms) and of a failed one, for logs. */
  onFill?: OnFill;
}

type OnFill = (event: { ids: number; ms: number; error?: Error }) => void;

/** The fleet's filter state in the shared tier (a mark): the generation checked, its shape, when filled. */
interface SharedState {
  generation: string;
  bits: number;
  hashes: number;
  filledAt: number;
  ids: number;
}

const STATE_MARK = 'bloom:state';
const FILLING_MARK = 'bloom:filling';
/** Ids whose bits go to the shared tier in one call while filling: a few thousand SETBITs per Lua call. */
const SHARED_FILL_BATCH = 1000;
/** Least time between two counts of the shared bitmap's bits. */
const COUNT_EVERY_MS = 60_000;

/** Point-in-time counts, for gauges. */
export interface ExistenceFilterStats {
  bits: number;
  hashes: number;
  /** Bits set, as last counted (the shared bitmap's every `syncMs`). */
  setBits: number;
  /** (set bits / bits)^hashes: the chance an absent id passes. */
  estimatedFalsePositiveRate: number;
  authoritative: boolean;
  /** Where checks are answered: the fleet's bitmap in the shared tier, or this process's. */
  store: 'shared' | 'memory';
  /** Bytes of process memory the filter holds (its bitmaps; twice while it rebuilds). */
  bytes: number;
  /** Checks since start by verdict (`observed_absent`: would have been absent if authoritative; `unavailable`: failed open). */
  checks: Readonly<Record<'absent' | 'maybe' | 'observed_absent' | 'unavailable', number>>;
}

/**
 * A Bloom filter of the groups that exist, so scans of made-up ids (cache penetration) stop at the proxy: with
 * a shared tier one bitmap for the fleet (no Redis module), filled once under a lock, else this process's. It
 * learns ids the upstream returned and the feed announces. Fails open: never absent while the shared tier is unreachable or before a complete fill.
 */
export class ExistenceFilter {
  readonly shape: BloomShape;
  readonly #exportIds: ExportIds | undefined;
  readonly #refreshMs: number;
  readonly #syncMs: number;
  readonly #l2: FleetBitmaps | undefined;
  readonly #clock: Clock;
  readonly #onFill: OnFill | undefined;
  readonly #positions: number[] = [];
  readonly #closing = new AbortController();
  /** This process's bits: the filter without a shared tier; learned ids only with one (never authoritative then). */
  #local: BloomBits;
  /** While this process rebuilds its filter: the bitmap being filled, which learns too. */
  #filling: BloomBits | undefined;
  #localAuthoritative = false;
  #shared: SharedState | undefined;
  /** The generation being filled in the shared tier, if any: learned ids go there too. */
  #sharedFilling: string | undefined;
  #sharedSetBits = 0;
  #countedAt = -Infinity;
  #timer: TimerHandle | undefined;
  #running: Promise<void> | undefined;
  readonly #checks = { absent: 0, maybe: 0, observed_absent: 0, unavailable: 0 };

  constructor(options: ExistenceFilterOptions = {}) {
    const o = { ...EXISTENCE_FILTER_DEFAULTS, ...definedOnly(options) };
    const S = EXISTENCE_FILTER_OPTION_SPECS;
    this.shape = bloomShape(
      specOption('expectedIds', o.expectedIds, S.expectedIds),
      specOption('falsePositiveRate', o.falsePositiveRate, S.falsePositiveRate),
    );
    this.#exportIds = o.exportIds === undefined ? undefined : functionOption<ExportIds>('exportIds', o.exportIds);
    this.#refreshMs = specOption('refreshMs', o.refreshMs, S.refreshMs);
    this.#syncMs = specOption('syncMs', o.syncMs, S.syncMs);
    if (o.l2 !== undefined && (typeof o.l2 !== 'object' || o.l2 === null || !('testBits' in o.l2)))
      throw new OptionError('l2', 'a shared tier with bitmaps (FleetBitmaps: RedisTier, InMemoryTier)', o.l2);
    this.#l2 = o.l2;
    this.#clock = clockOption('clock', o.clock);
    this.#onFill = o.onFill === undefined ? undefined : functionOption<OnFill>('onFill', o.onFill);
    this.#local = new BloomBits(this.shape);
  }

  /** Whether a rejected id is answered as absent (a complete fill from the export is in use). */
  get authoritative(): boolean {
    return this.#l2 !== undefined ? this.#shared !== undefined : this.#localAuthoritative;
  }

  /** Starts the periodic fills (with a shared tier, syncs); resolves once the first round is done. */
  start(): Promise<void> {
    this.#running ??= this.#round();
    return this.#running;
  }

  /** `absent` when authoritative and `key` is not in it, else `maybe` (failing open). Synchronous without a shared tier. */
  check(key: string): ExistenceVerdict | Promise<ExistenceVerdict> {
    const positions = bloomPositions(key, this.shape, this.#positions);
    const shared = this.#shared;
    const checks = this.#checks;
    // In this process's bits is enough (with a shared tier: no round trip, and a learned id's write may not have landed).
    if (this.#local.has(positions)) {
      checks.maybe++;
      return 'maybe';
    }
    if (this.#l2 === undefined || shared === undefined) {
      checks[this.#localAuthoritative ? 'absent' : 'observed_absent']++;
      return this.#localAuthoritative ? 'absent' : 'maybe';
    }
    return this.#l2.testBits(bitsName(shared.generation), [...positions]).then((found) => {
      if (found === 'missing') {
        // The storage lost the bitmap (a restart, a flush): fail open until a fill publishes a new one.
        if (this.#shared === shared) this.#shared = undefined;
        checks.unavailable++;
        return 'maybe';
      }
      checks[found === true ? 'maybe' : found === false ? 'absent' : 'unavailable']++;
      return found === false ? 'absent' : 'maybe';
    });
  }

  /** Whether `key` is in this process's bits (for observing without an export). */
  hasLocally(key: string): boolean {
    return this.#local.has(bloomPositions(key, this.shape, this.#positions));
  }

  /** Adds an id known to exist (an upstream answer, a change announced on the feed). */
  learn(key: string): void {
    const positions = bloomPositions(key, this.shape, this.#positions);
    this.#local.set(positions);
    this.#filling?.set(positions);
    if (this.#l2 === undefined) return;
    const copy = [...positions];
    // Only into bitmaps that exist: a late write must not recreate a dropped one (12 MB with no expiry).
    for (const generation of [this.#shared?.generation, this.#sharedFilling])
      if (generation !== undefined) void this.#l2.setBits(bitsName(generation), copy, { onlyIfExists: true });
  }

  stats(): ExistenceFilterStats {
    const setBits = this.#shared !== undefined ? this.#sharedSetBits : this.#local.setBits;
    return {
      ...this.shape,
      setBits,
      estimatedFalsePositiveRate: falsePositiveRateOf(this.shape, setBits),
      authoritative: this.authoritative,
      // A shared state is only ever taken up with a shared tier.
      store: this.#shared !== undefined ? 'shared' : 'memory',
      bytes: this.#local.bytes + (this.#filling?.bytes ?? 0),
      checks: { ...this.#checks },
    };
  }

  close(): void {
    this.#closing.abort();
    this.#clock.clearTimeout(this.#timer);
  }

  /** One round: fill or sync now, then the next one after `syncMs` (shared) or `refreshMs` (memory). */
  async #round(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    try {
      if (this.#l2 !== undefined) await this.#syncShared(this.#l2);
      else if (this.#exportIds !== undefined) await this.#fillLocal(this.#exportIds);
    } catch (error) {
      this.#onFill?.({ ids: 0, ms: 0, error: error instanceof Error ? error : new Error(String(error)) });
    }
    if (this.#closing.signal.aborted) return;
    const next = this.#l2 !== undefined ? this.#syncMs : this.#refreshMs;
    if (this.#l2 !== undefined || this.#exportIds !== undefined)
      this.#timer = this.#clock.setTimeout(() => void this.#round(), next);
  }

  /** Reads the whole export into a new bitmap, then swaps it in: checks use the old one meanwhile. */
  async #fillLocal(exportIds: ExportIds): Promise<void> {
    const started = this.#clock.now();
    const bits = new BloomBits(this.shape);
    this.#filling = bits;
    try {
      const ids = await this.#readExport(exportIds, (page) => {
        for (const id of page) bits.set(bloomPositions(id, this.shape, this.#positions));
      });
      this.#local = bits;
      this.#localAuthoritative = true;
      this.#onFill?.({ ids, ms: this.#clock.now() - started });
    } finally {
      this.#filling = undefined;
    }
  }

  /**
   * Takes up the fleet's filter state; when there is none of this shape, or it is older than `refreshMs`, the
   * instance that takes the fill lock fills and publishes a new generation (others keep the previous one).
   */
  async #syncShared(l2: FleetBitmaps): Promise<void> {
    const raw = await l2.readMark(STATE_MARK);
    if (raw === UNAVAILABLE) return; // keep what we had; checks fail open on their own
    const state = parseState(raw, this.shape);
    const filling = await l2.readMark(FILLING_MARK);
    this.#sharedFilling =
      filling === UNAVAILABLE || filling === undefined || filling === '' ? undefined : filling.split(' ')[0];
    // No state (expired, or the storage restarted empty): nothing to check against, fail open.
    this.#shared = state;
    const now = this.#clock.now();
    if (state !== undefined && now - this.#countedAt >= COUNT_EVERY_MS) await this.#countShared(l2, state.generation);
    if (this.#exportIds === undefined || (state !== undefined && now - state.filledAt < this.#refreshMs)) return;
    const generation = randomUUID();
    // One filler for the fleet; the lock outlives a fill of a few minutes and is renewed per page.
    const lockMs = Math.max(60_000, 2 * this.#syncMs);
    if (!(await l2.writeMark(FILLING_MARK, `${generation} ${now}`, lockMs, true))) return;
    this.#sharedFilling = generation;
    const started = now;
    try {
      let batch: number[] = [];
      const flush = async (): Promise<void> => {
        if (batch.length === 0) return;
        const sent = batch;
        batch = [];
        // The bitmap expires unless refilled: a fill abandoned halfway, or an old generation, does not stay forever.
        if (!(await l2.setBits(bitsName(generation), sent, { ttlMs: 3 * this.#refreshMs })))
          throw new Error('the shared tier became unreachable during the fill');
      };
      let pending = 0;
      const ids = await this.#readExport(this.#exportIds, async (page) => {
        for (const id of page) {
          batch.push(...bloomPositions(id, this.shape, this.#positions));
          if (++pending % SHARED_FILL_BATCH === 0) await flush();
        }
        await flush();
        await l2.writeMark(FILLING_MARK, `${generation} ${started}`, lockMs);
      });
      const published: SharedState = { generation, ...this.shape, filledAt: this.#clock.now(), ids };
      // The state outlives two refreshes: a fleet that stops refreshing keeps checking the last fill.
      if (!(await l2.writeMark(STATE_MARK, JSON.stringify(published), 3 * this.#refreshMs)))
        throw new Error('could not publish the filled filter');
      const previous = state?.generation;
      this.#shared = published;
      await this.#countShared(l2, generation);
      // Instances still on the previous generation take up the new one within syncMs; one that is
      // later finds it gone and fails open until it does.
      if (previous !== undefined)
        this.#clock.setTimeout(() => void l2.deleteBits(bitsName(previous)), Math.max(2 * this.#syncMs, 60_000));
      this.#onFill?.({ ids, ms: this.#clock.now() - started });
    } catch (error) {
      await l2.deleteBits(bitsName(generation));
      throw error;
    } finally {
      this.#sharedFilling = undefined;
      await l2.writeMark(FILLING_MARK, '', 1);
    }
  }

  /** Counts the shared bitmap's set bits for the gauges: a BITCOUNT over the whole bitmap, so once a minute at most. */
  async #countShared(l2: FleetBitmaps, generation: string): Promise<void> {
    this.#countedAt = this.#clock.now();
    const count = await l2.countBits(bitsName(generation));
    if (count !== UNAVAILABLE) this.#sharedSetBits = count;
  }

  /** Pages through the export, handing each page to `take`; resolves with the ids read. */
  async #readExport(exportIds: ExportIds, take: (ids: readonly string[]) => void | Promise<void>): Promise<number> {
    let after: string | undefined;
    let count = 0;
    for (;;) {
      if (this.#closing.signal.aborted) throw new Error('closed');
      const page = await exportIds(after, this.#closing.signal);
      await take(page.ids);
      count += page.ids.length;
      if (page.next === undefined) return count;
      if (page.next === after) throw new Error(`the id export did not advance past ${after}`);
      after = page.next;
    }
  }
}

function bitsName(generation: string): string {
  return `bloom:${generation}`;
}

/** The shared state, if it is one of this shape (instances sized differently keep their own). */
function parseState(raw: string | undefined, shape: BloomShape): SharedState | undefined {
  if (raw === undefined) return undefined;
  try {
    const state = JSON.parse(raw) as SharedState;
    if (
      typeof state.generation !== 'string' ||
      state.bits !== shape.bits ||
      state.hashes !== shape.hashes ||
      typeof state.filledAt !== 'number'
    )
      return undefined;
    return state;
  } catch {
    return undefined;
  }
}
