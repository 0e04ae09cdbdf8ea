import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ProxyError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import {
  clockOption,
  defaultsOf,
  definedOnly,
  fractionSpec,
  integerSpec,
  OptionError,
  specOption,
} from '../util/options.js';
import { UNAVAILABLE, type FleetBuckets } from '../shared-tier/contract.js';
import { takeToken, type TokenBucket } from '../util/token-bucket.js';

/** Default and range of every numeric option, declared once (the sidecar's settings read them too). */
export const MISS_BUDGET_OPTION_SPECS = {
  burst: integerSpec(100, 1, 1_000_000),
  perSecond: fractionSpec(10, 0.001, 1_000_000),
  maxClients: integerSpec(100_000, 1, 10_000_000),
} as const;

export const MISS_BUDGET_DEFAULTS = defaultsOf(MISS_BUDGET_OPTION_SPECS);

export interface MissBudgetOptions {
  /** Origin-bound misses a client may make at once (the bucket's size). Default 100. */
  burst?: number;
  /** Misses a second a client's budget refills by. Default 10. */
  perSecond?: number;
  /** Clients whose buckets this instance keeps (least recently seen dropped first: a bounded memory). Default 100000. */
  maxClients?: number;
  /** The fleet's buckets live in this tier (one budget per client for the fleet); while it is unreachable, or without it, this instance's. */
  l2?: FleetBuckets;
  /** Time of the local buckets' refill. Default: the system clock. */
  clock?: Clock;
}

/**
 * A token bucket per client for origin-bound misses, so one client scanning ids cannot spend the upstream for
 * everyone (hits, collapsed waits, stale answers are free). Fleet-wide through the shared tier while reachable.
 */
export class MissBudget {
  readonly burst: number;
  readonly perSecond: number;
  /** The IETF RateLimit-Policy of the budget: `burst` misses per the time it takes to refill. */
  readonly policy: string;
  readonly #l2: FleetBuckets | undefined;
  readonly #clock: Clock;
  readonly #local: LRUCache<string, TokenBucket>;
  readonly #rejections = { fleet: 0, local: 0 };

  constructor(options: MissBudgetOptions = {}) {
    const o = { ...MISS_BUDGET_DEFAULTS, ...definedOnly(options) };
    const S = MISS_BUDGET_OPTION_SPECS;
    this.burst = specOption('burst', o.burst, S.burst);
    this.perSecond = specOption('perSecond', o.perSecond, S.perSecond);
    this.#local = new LRUCache({ max: specOption('maxClients', o.maxClients, S.maxClients) });
    if (o.l2 !== undefined && (typeof o.l2 !== 'object' || o.l2 === null || !('takeToken' in o.l2)))
      throw new OptionError('l2', 'a shared tier with token buckets (FleetBuckets: RedisTier, InMemoryTier)', o.l2);
    this.#l2 = o.l2;
    this.#clock = clockOption('clock', o.clock);
    this.policy = `"misses";q=${this.burst};w=${Math.max(1, Math.ceil(this.burst / this.perSecond))}`;
  }

  /** Rejections since start, by where the bucket was: the fleet's, or this instance's. */
  get rejections(): Readonly<Record<'fleet' | 'local', number>> {
    return { ...this.#rejections };
  }

  /** `true` when `client` may make one more origin-bound miss (the token is taken), else the 429 to answer it with. */
  take(client: string): true | ProxyError | Promise<true | ProxyError> {
    if (this.#l2 === undefined) return this.#takeLocal(client);
    return this.#l2.takeToken(bucketOf(client), this.burst, this.perSecond).then((answer) => {
      if (answer === UNAVAILABLE) return this.#takeLocal(client);
      if (answer.allowed) return true;
      this.#rejections.fleet++;
      return this.#refusal(answer.tokens);
    });
  }

  #takeLocal(client: string): true | ProxyError {
    const now = this.#clock.now();
    const bucket = this.#local.get(client) ?? { tokens: this.burst, at: now };
    this.#local.set(client, bucket);
    if (takeToken(bucket, now, this.burst, this.perSecond)) return true;
    this.#rejections.local++;
    return this.#refusal(bucket.tokens);
  }

  #refusal(tokens: number): ProxyError {
    const retryAfter = Math.max(1, Math.ceil((1 - tokens) / this.perSecond));
    return new ProxyError(
      'RATE_LIMITED',
      `this client has spent its budget of ${this.burst} misses that go to the upstream (refilled at ${this.perSecond} a second); cached groups are not counted`,
      {
        retryAfterSeconds: retryAfter,
        headers: { 'ratelimit-policy': this.policy, ratelimit: `"misses";r=0;t=${retryAfter}` },
      },
    );
  }
}

/** A client key as a bucket name: fixed length, nothing of the client's bytes in a Redis key. */
function bucketOf(client: string): string {
  return createHash('sha1').update(client).digest('base64url').slice(0, 22);
}
