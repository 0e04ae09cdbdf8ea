#!/usr/bin/env node
import { ConfigError, configFromEnv } from './server/config.js';
import { startSidecar } from './server/sidecar.js';

/** `npm start`: the sidecar, configured by environment variables. */
async function main(): Promise<void> {
  let config;
  try {
    config = configFromEnv(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`group-profile-proxy: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const sidecar = await startSidecar(config);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    sidecar.close().then(
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
