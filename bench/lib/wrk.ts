import { spawn } from 'node:child_process';

export interface WrkResult {
  /** Requests completed during the run. */
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Runs wrk (Debian package `wrk`) pinned to `cpu` against a loopback URL and parses its report. */
export function wrk(url: string, options: { connections: number; seconds: number; cpu: string }): Promise<WrkResult> {
  if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(url))
    return Promise.reject(new Error(`refusing a non-loopback target: ${url}`));
  const child = spawn(
    'taskset',
    ['-c', options.cpu, 'wrk', '-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', url],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: (options.seconds + 30) * 1000,
    },
  );
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', (error) =>
      reject(new Error(`wrk failed (install it with 'apt-get install wrk'): ${error.message}`)),
    );
    child.once('close', (code) => {
      if (code !== 0)
        return reject(new Error(`wrk failed (install it with 'apt-get install wrk'): exit ${code} ${err}`));
      resolve(parseWrk(out));
    });
  });
}

export function parseWrk(out: string): WrkResult {
  const latency = (p: string): number => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!match) return Number.NaN;
    const value = Number(match[1]);
    return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1]),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p50Ms: latency('50'),
    p99Ms: latency('99'),
    errors: non2xx + (socketErrors ? socketErrors.slice(1).reduce((n, v) => n + Number(v), 0) : 0),
  };
}
