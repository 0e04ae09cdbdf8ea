import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * ADDRESS_FILE: the URL the proxy answers on, one line, while it listens. The image's HEALTHCHECK
 * (scripts/healthcheck.sh) reads it, so the check follows `--port`, `PORT` and `HOST` instead of guessing them.
 */
export interface AddressFile {
  readonly path: string;
  /** Removes the file if it still holds this process's URL; idempotent, never throws. */
  remove(): void;
}

export class AddressFileError extends Error {
  readonly code = 'ERR_ADDRESS_FILE';
  constructor(path: string, cause: unknown) {
    super(
      `cannot write ADDRESS_FILE=${JSON.stringify(path)}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.name = 'AddressFileError';
  }
}

/** Through a temporary file and a rename, so a reader never sees half a line. Throws an AddressFileError. */
export function writeAddressFile(path: string, url: string): AddressFile {
  const content = `${url}\n`;
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, content, { mode: 0o644 });
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw new AddressFileError(path, error);
  }
  let removed = false;
  return {
    path,
    remove() {
      if (removed) return;
      removed = true;
      try {
        // A second instance given the same file may have written its own address since: leave that one alone.
        if (readFileSync(path, 'utf8') === content) rmSync(path, { force: true });
      } catch {
        // Already gone, or unreadable: nothing to clean up.
      }
    },
  };
}
