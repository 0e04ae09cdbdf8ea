/** Runs the mock backend on a real HTTP socket (tests, benchmarks, the proxy's embedded default). */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { integerOption, OptionError } from '../util/options.js';
import { createMockBackend, type MockBackend, type MockBackendOptions } from './app.js';

export interface RunningMockBackend {
  /** `http://host:port`, loopback when bound to all interfaces. */
  url: string;
  port: number;
  backend: MockBackend;
  /** Stops listening and cuts keep-alive and in-flight connections, so callers exit promptly. */
  close(): Promise<void>;
}

export type StartMockBackendOptions = Partial<MockBackendOptions> & {
  /** Default 0: an ephemeral port, read it back from `port`/`url`. */
  port?: number;
  /** Default '127.0.0.1'. */
  host?: string;
};

export async function startMockBackend(options: StartMockBackendOptions = {}): Promise<RunningMockBackend> {
  const { port: requestedPort = 0, host = '127.0.0.1', ...backendOptions } = options;
  integerOption('port', requestedPort, 0, 65_535);
  if (typeof host !== 'string' || host === '') throw new OptionError('host', 'a non-empty host name or address', host);
  const backend = createMockBackend(backendOptions);

  const server = createAdaptorServer({ fetch: backend.app.fetch }) as Server;
  // Bursts open many connections at once; Node's default backlog (511) would overflow into resets.
  server.listen({ port: requestedPort, host, backlog: 4096 });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      // close() alone waits for keep-alive sockets and parked (hang) requests.
      server.closeAllConnections();
    });
    return closing;
  };
  return { url, port, backend, close };
}
