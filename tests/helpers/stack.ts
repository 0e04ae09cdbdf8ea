import { Pool } from 'undici';
import {
  startMockBackend,
  type RunningMockBackend,
  type StartMockBackendOptions,
} from '../../src/mock-backend/server.js';
import { startSidecar, type RunningSidecar, type SidecarDependencies } from '../../src/server/sidecar.js';
import type { SidecarConfig } from '../../src/server/config.js';
import type { MockStats } from '../../src/mock-backend/state.js';

export interface Stack {
  backend: RunningMockBackend;
  proxy: RunningSidecar;
  client: Pool;
  /** GET through the proxy over a real socket. */
  get(
    path: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; headers: Record<string, string>; body: string }>;
  stats(): MockStats;
  setMode(mode: string, latencyMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The mock backend and the proxy on ephemeral loopback ports, plus a client with enough connections for a burst. */
export async function startStack(
  backendOptions: StartMockBackendOptions = {},
  proxyConfig: Partial<SidecarConfig> = {},
  clientConnections = 1000,
  dependencies: SidecarDependencies = {},
): Promise<Stack> {
  const backend = await startMockBackend({ latencyMs: 100, latencyJitterMs: 0, ...backendOptions });
  const proxy = await startSidecar(
    // Single upstream calls, as the tests built on this count them; the default (UPSTREAM_BATCH=auto) has its own.
    { port: 0, host: '127.0.0.1', logLevel: 'silent', upstreamUrl: backend.url, upstreamBatch: 'off', ...proxyConfig },
    dependencies,
  );
  const client = new Pool(proxy.url, { connections: clientConnections, pipelining: 1 });
  return {
    backend,
    proxy,
    client,
    async get(path, headers = {}) {
      const response = await client.request({ path, method: 'GET', headers });
      return {
        status: response.statusCode,
        headers: response.headers as Record<string, string>,
        body: await response.body.text(),
      };
    },
    stats: () => backend.backend.stats(),
    async setMode(mode, latencyMs) {
      const response = await fetch(`${backend.url}/__mode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(latencyMs === undefined ? { mode } : { mode, latencyMs }),
      });
      if (response.status >= 300) throw new Error(`mock /__mode answered ${response.status}: ${await response.text()}`);
    },
    async close() {
      await client.close();
      await proxy.close();
      await backend.close();
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
