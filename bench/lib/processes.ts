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
}

/** Starts a compiled entry point of dist/ and resolves with the URL from its first line matching `ready`. */
export function startNode(script: string, env: Record<string, string>, ready: RegExp, options: NodeProcessOptions = {}): Promise<Running> {
  const argv = [...(options.nodeArgs ?? []), script, ...(options.args ?? [])];
  const [command, args] = options.cpu === undefined ? [process.execPath, argv] : ['taskset', ['-c', options.cpu, process.execPath, ...argv]];
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not start within 15 s`));
    }, 15_000);
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
  return startNode('dist/mock-backend/cli.js', { MOCK_PORT: '0', MOCK_LATENCY_JITTER_MS: '0', ...env }, /mock backend listening/);
}

/** Starts the sidecar as production does: with SIDECAR_NODE_FLAGS unless `options.nodeArgs` says otherwise. */
export function startProxy(env: Record<string, string>, options: NodeProcessOptions = {}): Promise<Running> {
  // The proxy logs nothing per request at info; its 'listening' line is how we learn its URL.
  return startNode('dist/cli.js', { PORT: '0', HOST: '127.0.0.1', ...env, LOG_LEVEL: 'info' }, /listening/, { ...options, nodeArgs: options.nodeArgs ?? [...SIDECAR_NODE_FLAGS] });
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
  await fetch(`${mockUrl}/__mode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode, latencyMs }) });
}

/** Pins every thread of this process to `cpu` (taskset), so a load generator never shares the server's core. */
export function pinThisProcess(cpu: string): void {
  const run = spawnSync('taskset', ['-a', '-cp', cpu, String(process.pid)], { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0) throw new Error(`taskset failed: ${run.error?.message ?? run.stderr}`);
}
