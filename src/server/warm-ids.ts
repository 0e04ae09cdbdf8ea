import { readFile } from 'node:fs/promises';
import { ConfigError } from './config.js';

/** Ids a warm-start file may list: a preload is bounded in count as in time. */
export const MAX_WARM_IDS = 100_000;

/**
 * The group ids of WARM_START_IDS_FILE: separated by commas, spaces or new lines, `#` to the end
 * of a line is a comment, duplicates once. An unreadable file, an invalid id (with its line) or
 * more than MAX_WARM_IDS ids is a ConfigError: the proxy refuses to start rather than start cold
 * without saying so.
 */
export async function readWarmIds(path: string, parseId: (raw: string) => string | undefined): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      'WARM_START_IDS_FILE',
      'a readable file of group ids',
      `${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    );
  }
  const ids = new Set<string>();
  const lines = text.split('\n');
  for (let line = 0; line < lines.length; line++) {
    const content = lines[line]!.replace(/#.*/, '');
    for (const raw of content.split(/[\s,]+/)) {
      if (raw === '') continue;
      const id = parseId(raw);
      if (id === undefined)
        throw new ConfigError(
          'WARM_START_IDS_FILE',
          'group ids (decimal integers) separated by commas, spaces or new lines',
          `${path}: line ${line + 1}: ${raw.slice(0, 40)}`,
        );
      ids.add(id);
      if (ids.size > MAX_WARM_IDS)
        throw new ConfigError(
          'WARM_START_IDS_FILE',
          `at most ${MAX_WARM_IDS} group ids`,
          `${path}: more than ${MAX_WARM_IDS}`,
        );
    }
  }
  return [...ids];
}
