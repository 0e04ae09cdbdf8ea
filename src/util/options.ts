import { SYSTEM_CLOCK, type Clock } from './clock.js';

// Option validation shared by every component, once at construction: errors name the bad option, fixed in one read.

export class OptionError extends Error {
  readonly code = 'ERR_INVALID_OPTION';
  constructor(
    readonly option: string,
    readonly expected: string,
    readonly received: unknown,
  ) {
    super(`invalid option ${option}: expected ${expected}, received ${describe(received)}`);
    this.name = 'OptionError';
  }
}

/** Stands in for a rejected secret as an OptionError's `received`: its type and length, never its value. */
class Redacted {
  constructor(readonly description: string) {}
  toString(): string {
    return this.description;
  }
  toJSON(): string {
    return this.description;
  }
}

function describe(value: unknown): string {
  if (value instanceof Redacted) return value.description;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/** Rejects unknown option names, as the CLI rejects unknown flags: a misspelt option would silently get its default. */
export function knownOptions(component: string, options: unknown, known: readonly string[]): void {
  if (options === null || typeof options !== 'object') throw new OptionError(component, 'an options object', options);
  for (const name of Object.keys(options)) {
    if (!known.includes(name))
      throw new OptionError(name, `an option of ${component} (${known.join(', ')})`, 'unknown');
  }
}

export function integerOption(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new OptionError(name, `an integer in [${min}, ${max}]`, value);
  }
  return value;
}

export function numberOption(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new OptionError(name, `a number in [${min}, ${max}]`, value);
  }
  return value;
}

export function functionOption<T extends (...args: never[]) => unknown>(name: string, value: unknown): T {
  if (typeof value !== 'function') throw new OptionError(name, 'a function', value);
  return value as T;
}

export function urlOption(name: string, value: unknown, protocols: readonly string[]): URL {
  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined;
  if (url === undefined || !protocols.includes(url.protocol))
    throw new OptionError(name, `a ${protocols.join(' or ')} URL`, value);
  return url;
}

/** A URL as it may be shown: between `//` and the last `@` (credentials, even with `@` or `/` in them) is redacted. */
export function redactUrl(raw: string): string {
  return raw.replace(/\/\/.*@/s, '//<redacted>@');
}

/** `redis://host:port[/db]`: ioredis reads the path as the database and would send `SELECT NaN` for `/abc`. */
const REDIS_DATABASE_PATH = /^\/?(\d{1,5})?$/;

/** A redis:// or rediss:// URL ioredis reads as meant: a host, a numeric database if any, no query. */
export function isRedisUrl(url: URL): boolean {
  return (
    (url.protocol === 'redis:' || url.protocol === 'rediss:') &&
    url.hostname !== '' &&
    REDIS_DATABASE_PATH.test(url.pathname) &&
    url.search === '' &&
    url.hash === ''
  );
}

/** Minimum length of the admin Bearer token, for the library (`adminToken`, `token`) and the sidecar (`ADMIN_TOKEN`) alike. */
export const ADMIN_TOKEN_MIN_LENGTH = 16;

const PRINTABLE_ASCII = /^[\x21-\x7e]*$/;

/** True for a string of at least `minLength` printable ASCII characters (0x21-0x7e: no spaces, no control characters). */
export function isPrintableSecret(value: unknown, minLength: number): value is string {
  return typeof value === 'string' && value.length >= minLength && PRINTABLE_ASCII.test(value);
}

/** A secret such as a Bearer token; a bad one is described by type and length only, never reaching a message or log. */
export function secretOption(name: string, value: unknown, minLength: number): string {
  if (isPrintableSecret(value, minLength)) return value;
  throw new OptionError(
    name,
    `at least ${minLength} printable ASCII characters (0x21-0x7e, no spaces)`,
    new Redacted(describeSecret(value)),
  );
}

function describeSecret(value: unknown): string {
  if (typeof value === 'string') {
    const length = `a string of ${value.length} character${value.length === 1 ? '' : 's'}`;
    return PRINTABLE_ASCII.test(value) ? length : `${length}, not all printable ASCII`;
  }
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return `${type === 'object' ? 'an' : 'a'} ${type}`;
}

/** Drops keys whose value is `undefined` so they fall back to defaults instead of failing validation. */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** A Clock option (src/util/clock.ts): the system clock when undefined. */
export function clockOption(name: string, value: unknown): Clock {
  if (value === undefined) return SYSTEM_CLOCK;
  const clock = value as Record<string, unknown> | null;
  const methods = ['now', 'setTimeout', 'clearTimeout'];
  if (typeof clock !== 'object' || clock === null || !methods.every((method) => typeof clock[method] === 'function'))
    throw new OptionError(name, 'a Clock ({ now, setTimeout, clearTimeout })', value);
  return value as Clock;
}

/** A numeric option's one declaration, read by the component, the sidecar's settings and the docs: written once. */
export interface NumberSpec {
  readonly default: number;
  readonly min: number;
  readonly max: number;
  /** Integers only (else any finite number in range). */
  readonly integer: boolean;
}

export function integerSpec(defaultValue: number, min: number, max = Number.MAX_SAFE_INTEGER): NumberSpec {
  return Object.freeze({ default: defaultValue, min, max, integer: true });
}

export function fractionSpec(defaultValue: number, min: number, max: number): NumberSpec {
  return Object.freeze({ default: defaultValue, min, max, integer: false });
}

/** `value` checked against `spec` (its default when undefined). */
export function specOption(name: string, value: unknown, spec: NumberSpec): number {
  const given = value === undefined ? spec.default : value;
  return spec.integer ? integerOption(name, given, spec.min, spec.max) : numberOption(name, given, spec.min, spec.max);
}

/** The defaults of a table of specs, as the component's public `*_DEFAULTS` object. */
export function defaultsOf<S extends Record<string, NumberSpec>>(specs: S): { readonly [K in keyof S]: number } {
  return Object.freeze(Object.fromEntries(Object.entries(specs).map(([key, spec]) => [key, spec.default]))) as {
    readonly [K in keyof S]: number;
  };
}
