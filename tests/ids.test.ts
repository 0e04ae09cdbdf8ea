import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_GROUP_ID, parseGroupId } from '../src/index.js';
import { rawLastPathSegment } from '../src/ids.js';

// The rule as the README states it, written the obvious way: the reference the fast parser must agree with.
const reference = (raw: string, maxId: number): string | undefined =>
  /^[1-9][0-9]{0,15}$/.test(raw) && Number(raw) <= maxId ? raw : undefined;

const EDGES = [
  '',
  '0',
  '00',
  '01',
  '1',
  '9',
  '10',
  '42',
  '099',
  '1234567890123456',
  '12345678901234567',
  '9007199254740991',
  '9007199254740992',
  '9007199254740993',
  '9999999999999999',
  '-1',
  '+1',
  '1e3',
  '1.0',
  '1 ',
  ' 1',
  '1/2',
  '%31',
  '４２',
  '٤٢',
  '1\u0000',
  '0x10',
  'NaN',
  'Infinity',
  '1_000',
  '/',
  ':',
  '\uD83D\uDE00',
];

describe('parseGroupId', () => {
  it('agrees with the canonical-id rule on edge cases, for several maxId bounds', () => {
    for (const maxId of [DEFAULT_MAX_GROUP_ID, 1, 42, 99_999, 9_007_199_254_740_990]) {
      for (const raw of EDGES)
        expect([raw, maxId, parseGroupId(raw, maxId)]).toEqual([raw, maxId, reference(raw, maxId)]);
    }
  });

  it('agrees with the rule on 20,000 random strings over digits and their neighbours', () => {
    // A small deterministic generator, so a failure names an input that reproduces.
    let seed = 12345;
    const next = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const alphabet = '0123456789/:. +-eéx٣';
    let accepted = 0;
    for (let n = 0; n < 20_000; n++) {
      const length = Math.floor(next() * 19);
      let raw = '';
      for (let i = 0; i < length; i++)
        raw += next() < 0.85 ? String(Math.floor(next() * 10)) : alphabet[Math.floor(next() * alphabet.length)];
      const maxId = next() < 0.5 ? DEFAULT_MAX_GROUP_ID : Math.floor(next() * 1e12);
      const got = parseGroupId(raw, maxId);
      expect([raw, maxId, got]).toEqual([raw, maxId, reference(raw, maxId)]);
      if (got !== undefined) accepted++;
    }
    // Both outcomes well represented, so the agreement above means something.
    expect(accepted).toBeGreaterThan(2_000);
    expect(accepted).toBeLessThan(18_000);
  });
});

describe('rawLastPathSegment', () => {
  it('takes the last segment before the query, still percent-encoded', () => {
    expect(rawLastPathSegment('/groups/42?x=1')).toBe('42');
    expect(rawLastPathSegment('/groups/%34%32')).toBe('%34%32');
    expect(rawLastPathSegment('/a/b/c')).toBe('c');
    expect(rawLastPathSegment('/groups/')).toBe('');
  });
});
