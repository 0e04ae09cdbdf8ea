/**
 * Option validation shared by every component. Each component declares one
 * options type with documented defaults and validates it once, at
 * construction; errors name the bad option so a misconfiguration is fixed in
 * one read.
 */

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

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
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
  if (typeof value !== 'string') throw new OptionError(name, `a ${protocols.join(' or ')} URL`, value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OptionError(name, `a ${protocols.join(' or ')} URL`, value);
  }
  if (!protocols.includes(url.protocol)) throw new OptionError(name, `a ${protocols.join(' or ')} URL`, value);
  return url;
}
