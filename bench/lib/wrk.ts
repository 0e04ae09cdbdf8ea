import { spawnSync } from 'node:child_process';

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Runs wrk (Debian package `wrk`) pinned to `cpu` against a loopback URL and parses its report. */
export function wrk(url: string, options: { connections: number; seconds: number; cpu: string }): WrkResult {
  if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(url)) throw new Error(`refusing a non-loopback target: ${url}`);
  const run = spawnSync('taskset', ['-c', options.cpu, 'wrk', '-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', url], {
    encoding: 'utf8',
    timeout: (options.seconds + 30) * 1000,
  });
  if (run.error !== undefined || run.status !== 0) {
    throw new Error(`wrk failed (install it with 'apt-get install wrk'): ${run.error?.message ?? run.stderr}`);
  }
  const out = run.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const latency = (p: string): number => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!match) return Number.NaN;
    const value = Number(match[1]);
    return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0);
  return { rps, p50Ms: latency('50'), p99Ms: latency('99'), errors };
}
