/** Returned by an operation that could not reach storage in time (a module of its own: checking loads no ioredis). */
export const UNAVAILABLE: unique symbol = Symbol('redis-unavailable');
export type Unavailable = typeof UNAVAILABLE;
