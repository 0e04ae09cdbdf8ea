import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SIDECAR_NODE_FLAGS } from '../../src/server/node-flags.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Running {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface NodeProcessOptions {
  /** Node flags before the script. */
  nodeArgs?: string[];
  /** Arguments after the script. */
  args?: string[];
  /** Pin the process to this CPU list with taskset (e.g. "0"). */
  cpu?: string;
  /** A command and its flags to run node under (e.g. valgrind). */
  wrapper?: string[];
  /** How long the process may take to print its ready line. Default 15 s. */
  startTimeoutMs?: number;
}

/** Starts a compiled entry point of dist/ and resolves with the URL from its first line matching `ready`. */
export function startNode(
  script: string,
  env: Record<string, string>,
  ready: RegExp,
  options: NodeProcessOptions = {},
): Promise<Running> {
  const command = [
    ...(options.cpu === undefined ? [] : ['taskset', '-c', options.cpu]),
    ...(options.wrapper ?? []),
    process.execPath,
    ...(options.nodeArgs ?? []),
    script,
    ...(options.args ?? []),
  ];
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not start within ${startTimeoutMs / 1000} s`));
    }, startTimeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${command[0]} could not be started for ${script}: ${error.message}`));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!ready.test(line)) return;
      clearTimeout(timer);
      const url = (JSON.parse(line) as { url: string }).url;
      resolve({
        url,
        child,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

export function startMock(env: Record<string, string> = {}): Promise<Running> {
  return startNode(
    'dist/mock-backend/cli.js',
    { MOCK_PORT: '0', MOCK_LATENCY_JITTER_MS: '0', ...env },
    /mock backend listening/,
  );
}

/** Starts the sidecar as production does: with SIDECAR_NODE_FLAGS unless `options.nodeArgs` says otherwise. */
export function startProxy(env: Record<string, string>, options: NodeProcessOptions = {}): Promise<Running> {
  // The proxy logs nothing per request at info; its 'listening' line is how we learn its URL.
  return startNode('dist/cli.js', { PORT: '0', HOST: '127.0.0.1', ...env, LOG_LEVEL: 'info' }, /listening/, {
    ...options,
    nodeArgs: options.nodeArgs ?? [...SIDECAR_NODE_FLAGS],
  });
}

export interface BackendStats {
  calls: number;
  singleCalls: number;
  batchCalls: number;
  batchIds: number;
  byId: Record<string, number>;
  maxInFlight: number;
}

export async function backendStats(mockUrl: string): Promise<BackendStats> {
  return (await (await fetch(`${mockUrl}/__stats`)).json()) as BackendStats;
}

export async function resetBackend(mockUrl: string): Promise<void> {
  await fetch(`${mockUrl}/__reset`, { method: 'POST' });
}

export async function setBackendMode(mockUrl: string, mode: string, latencyMs?: number): Promise<void> {
  await fetch(`${mockUrl}/__mode`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ mode, latencyMs }),
  });
}

/** Pins every thread of this process to `cpu` (taskset), so a load generator never shares the server's core. */
export function pinThisProcess(cpu: string): void {
  const run = spawnSync('taskset', ['-a', '-cp', cpu, String(process.pid)], { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0)
    throw new Error(`taskset failed: ${run.error?.message ?? run.stderr}`);
}

/**
 * The hot-path yardstick (bench/bare-server.mjs): a bare node:http server
 * answering every request with the body and headers of the proxy's L1 hit
 * for /groups/42, Content-Length included so neither answers chunked.
 */
export async function startBareServer(
  proxyUrl: string,
  env: Record<string, string>,
  options: NodeProcessOptions,
): Promise<Running> {
  const fill = await fetch(`${proxyUrl}/groups/42`);
  const body = Buffer.from(await fill.arrayBuffer());
  const hit = await fetch(`${proxyUrl}/groups/42`);
  await hit.arrayBuffer();
  const headers: Record<string, string> = {};
  for (const name of ['content-type', 'cache-control', 'age', 'cache-status', 'etag', 'content-length'])
    headers[name] = hit.headers.get(name)!;
  return startNode('bench/bare-server.mjs', env, /bare server listening/, {
    ...options,
    args: [JSON.stringify({ headers, body: body.toString('base64') })],
  });
}
