/** Group-id parsing shared by the single and batch routes. */

/** Canonical decimal: no sign, no leading zero, at most 16 digits. */
export const GROUP_ID_PATTERN = /^[1-9][0-9]{0,15}$/;

export type ParsedIds = { ok: true; ids: string[] } | { ok: false; message: string };

export function parseGroupId(raw: string): ParsedIds {
  if (!GROUP_ID_PATTERN.test(raw)) return { ok: false, message: `group id must match ${GROUP_ID_PATTERN.source}` };
  return { ok: true, ids: [raw] };
}

/** Parses `ids=1,2,3`; duplicates collapse to their first occurrence. */
export function parseBatchIds(raw: string | undefined, maxBatchIds: number): ParsedIds {
  if (raw === undefined || raw === '')
    return { ok: false, message: 'query parameter ids is required, e.g. ?ids=1,2,3' };
  const parts = raw.split(',');
  if (parts.length > maxBatchIds)
    return { ok: false, message: `at most ${maxBatchIds} ids per call, got ${parts.length}` };
  const bad = parts.find((part) => !GROUP_ID_PATTERN.test(part));
  if (bad !== undefined) return { ok: false, message: `invalid group id ${JSON.stringify(bad)} in ids` };
  return { ok: true, ids: [...new Set(parts)] };
}
