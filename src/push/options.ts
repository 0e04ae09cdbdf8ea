import { defaultsOf, integerSpec } from '../util/options.js';

/** Defaults and ranges of the push options, declared once. */
export const PUSH_OPTION_SPECS = {
  /** Subscribers (streams) one instance holds at most; more are refused with 503. About 5 KB each when idle. */
  maxSubscribers: integerSpec(8000, 1, 1_000_000),
  /** Groups one stream may follow at most; more is a 400. */
  maxGroups: integerSpec(100, 1, 1000),
  /** Bytes a subscriber may leave unread; past them it is dropped (it resumes later with Last-Event-ID). */
  maxBufferedBytes: integerSpec(64 * 1024, 1024, 64 * 1024 * 1024),
  /** Idle streams get a comment line this often, ms, so proxies in between keep them open. */
  heartbeatMs: integerSpec(15_000, 10, 3_600_000),
  /** The reconnection delay streams are told at shutdown, ms. */
  retryMs: integerSpec(1000, 0, 600_000),
} as const;

export const PUSH_DEFAULTS = defaultsOf(PUSH_OPTION_SPECS);
