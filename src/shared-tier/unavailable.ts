/**
 * Returned by every L2 operation that could not reach Redis in time. In a
 * module of its own so that code testing for it does not load ioredis.
 */
export const UNAVAILABLE: unique symbol = Symbol('redis-unavailable');
export type Unavailable = typeof UNAVAILABLE;
