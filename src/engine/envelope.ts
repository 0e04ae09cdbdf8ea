import { etagOf, type CacheEntry } from './entry.js';

/**
 * Shared-tier values are a versioned envelope: one JSON header line, then the body
 * bytes as served. The header's ETag is checked against the body on read, so
 * a truncated or foreign value is detected and treated as a miss.
 */
export const ENVELOPE_VERSION = 1;

interface EnvelopeHeader {
  /** Format version. */
  v: number;
  /** `f` found, `m` missing (negative entry). */
  k: 'f' | 'm';
  /** storedAt, freshUntil, and end of the stale window, ms since the epoch. */
  s: number;
  f: number;
  x: number;
  e: string;
}

export interface EnvelopeFields {
  kind: CacheEntry['kind'];
  body: Buffer;
  etag: string;
  storedAt: number;
  freshUntil: number;
  /** Last instant the entry may be served at all (stale windows included). */
  usableUntil: number;
}

const NEWLINE = 0x0a;

export function encodeEnvelope(entry: EnvelopeFields): Buffer {
  const header: EnvelopeHeader = {
    v: ENVELOPE_VERSION,
    k: entry.kind === 'found' ? 'f' : 'm',
    s: entry.storedAt,
    f: entry.freshUntil,
    x: entry.usableUntil,
    e: entry.etag,
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`, 'utf8'), entry.body]);
}

/** The fields of an envelope, or `undefined` for anything that is not a valid current-format envelope. */
export function decodeEnvelope(bytes: Buffer): EnvelopeFields | undefined {
  const newline = bytes.indexOf(NEWLINE);
  if (newline <= 0 || newline > 1024) return undefined;
  let header: Partial<EnvelopeHeader>;
  try {
    header = JSON.parse(bytes.subarray(0, newline).toString('utf8')) as Partial<EnvelopeHeader>;
  } catch {
    return undefined;
  }
  if (header === null || typeof header !== 'object' || header.v !== ENVELOPE_VERSION) return undefined;
  if (header.k !== 'f' && header.k !== 'm') return undefined;
  if (!isTime(header.s) || !isTime(header.f) || !isTime(header.x) || typeof header.e !== 'string') return undefined;
  const body = Buffer.from(bytes.subarray(newline + 1));
  if (etagOf(body) !== header.e) return undefined;
  return {
    kind: header.k === 'f' ? 'found' : 'missing',
    body,
    etag: header.e,
    storedAt: header.s,
    freshUntil: header.f,
    usableUntil: header.x,
  };
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
