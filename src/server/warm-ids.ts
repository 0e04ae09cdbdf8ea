import { readFile } from 'node:fs/promises';
import { ConfigError } from './config.js';

/** Ids a warm-start file may list: a preload is bounded in count as in time. */
export const MAX_WARM_IDS = 100_000;

/**
 * The group ids of WARM_START_IDS_FILE, duplicates once. Any problem with it is a ConfigError: the proxy refuses to
 * start rather than start cold without saying so.
 */
export async function readWarmIds(path: string, parseId: (raw: string) => string | undefined): Promise<string[]> {
  const invalid = (allowed: string, shown: string) => new ConfigError('WARM_START_IDS_FILE', allowed, shown);
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw invalid('a readable file of group ids', `${path} (${error.code ?? String(error)})`);
  });
  const ids = new Set<string>();
  const lines = text.split('\n');
  for (let line = 0; line < lines.length; line++) {
    for (const raw of lines[line]!.replace(/#.*/, '').split(/[\s,]+/)) {
      if (raw === '') continue;
      const id = parseId(raw);
      if (id === undefined) {
        const allowed = 'group ids (decimal integers) separated by commas, spaces or new lines';
        throw invalid(allowed, `${path}: line ${line + 1}: ${raw.slice(0, 40)}`);
      }
      ids.add(id);
      if (ids.size > MAX_WARM_IDS)
        throw invalid(`at most ${MAX_WARM_IDS} group ids`, `${path}: more than ${MAX_WARM_IDS}`);
    }
  }
  return [...ids];
}
