#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { writeAddressFile } from './server/address-file.js';
import { helpText, parseArgs, UsageError } from './server/cli-args.js';
import { ConfigError, configFromEnv, type SidecarConfig } from './server/config.js';
import { startSidecar } from './server/sidecar.js';

/** `npm start` / `group-profile-proxy`: the sidecar, configured by environment variables and flags. */
async function main(): Promise<void> {
  let config: SidecarConfig;
  try {
    const command = parseArgs(process.argv.slice(2));
    if (command.help) {
      process.stdout.write(helpText());
      return;
    }
    if (command.run === 'version') {
      const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`group-profile-proxy ${pkg.version}\n`);
      return;
    }
    config = configFromEnv({ ...process.env, ...command.env });
    if (command.run === 'invalidate' || command.run === 'feed-keys') {
      const { runFeedCommand } = await import('./server/feed-command.js');
      process.exitCode = await runFeedCommand(config, command, { out: process.stdout, err: process.stderr });
      return;
    }
  } catch (error) {
    // One rule for every command: 2 for a usage error (the command line), 1 for a bad setting.
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`group-profile-proxy: ${error.message}\n`);
      process.exit(error instanceof UsageError ? 2 : 1);
    }
    throw error;
  }
  const sidecar = await startSidecar(config);
  // Written once listening, for the image's HEALTHCHECK; a file that cannot be written is a start-up error (exit 1
  // below), not a health check that fails forever.
  const addressFile = config.addressFile === undefined ? undefined : writeAddressFile(config.addressFile, sidecar.url);
  // Also on other exits (a fatal error), so only a killed process leaves the file behind.
  process.once('exit', () => addressFile?.remove());
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    sidecar
      .close()
      .finally(() => addressFile?.remove())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          process.stderr.write(`group-profile-proxy: shutdown failed: ${String(error)}\n`);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`group-profile-proxy: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
