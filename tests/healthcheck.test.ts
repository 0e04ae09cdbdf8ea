/**
 * ADDRESS_FILE and the image's HEALTHCHECK script (scripts/healthcheck.sh):
 * how the file is written and removed, and what the script answers for every
 * way a check can go, against small stand-in servers. The image's own
 * commands run end to end in tests/deploy.test.ts.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AddressFileError, writeAddressFile } from '../src/server/address-file.js';
import { ROOT } from './helpers/spawn.js';

const SCRIPT = join(ROOT, 'scripts/healthcheck.sh');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gpp-healthcheck-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the script with bash, with only PATH and `env`, as the HEALTHCHECK does. */
function check(
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      'bash',
      [SCRIPT, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 10_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr, ms: Date.now() - started });
      },
    );
  });
}

/** Listens on a free port of `host`; the cleanup closes the server and cuts the connections it still holds. */
async function listen(server: Server | ReturnType<typeof createHttpServer>, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** An HTTP server answering /healthz with `status`, recording what it was sent. */
async function healthServer(
  status: number,
  host = '127.0.0.1',
): Promise<{
  port: number;
  requests: { method: string; url: string; httpVersion: string; headers: IncomingHttpHeaders }[];
}> {
  const requests: { method: string; url: string; httpVersion: string; headers: IncomingHttpHeaders }[] = [];
  const server = createHttpServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, httpVersion: req.httpVersion, headers: req.headers });
    res
      .writeHead(status, { 'content-type': 'application/json' })
      .end(JSON.stringify({ status: status === 200 ? 'ok' : 'down' }));
  });
  return { port: await listen(server, host), requests };
}

function addressFile(content: string): string {
  const file = join(tempDir(), 'url');
  writeFileSync(file, content);
  return file;
}

describe('writeAddressFile', () => {
  it('writes the URL and a newline through a rename, leaving no temporary file', () => {
    const dir = tempDir();
    const file = join(dir, 'proxy.url');
    const written = writeAddressFile(file, 'http://127.0.0.1:8080');
    expect(readFileSync(file, 'utf8')).toBe('http://127.0.0.1:8080\n');
    expect(readdirSync(dir)).toEqual(['proxy.url']);
    // A restart overwrites a stale file in place.
    writeAddressFile(file, 'http://127.0.0.1:8081');
    expect(readFileSync(file, 'utf8')).toBe('http://127.0.0.1:8081\n');
    expect(readdirSync(dir)).toEqual(['proxy.url']);
    // …and the first handle then leaves the newer address alone.
    written.remove();
    expect(readFileSync(file, 'utf8')).toBe('http://127.0.0.1:8081\n');
  });

  it('removes its own file, once, without throwing when it is already gone', () => {
    const file = join(tempDir(), 'url');
    const written = writeAddressFile(file, 'http://[::1]:8080');
    expect(readFileSync(file, 'utf8')).toBe('http://[::1]:8080\n');
    written.remove();
    expect(() => readFileSync(file)).toThrow(/ENOENT/);
    expect(() => written.remove()).not.toThrow();
  });

  it('throws an AddressFileError naming ADDRESS_FILE and the cause, and leaves nothing behind', () => {
    const dir = tempDir();
    const file = join(dir, 'missing-directory', 'url');
    expect(() => writeAddressFile(file, 'http://127.0.0.1:1')).toThrow(AddressFileError);
    expect(() => writeAddressFile(file, 'http://127.0.0.1:1')).toThrow(
      /^cannot write ADDRESS_FILE=".*missing-directory\/url": ENOENT/,
    );
    // A directory where the file should be: the rename fails, the temporary file is cleaned up.
    mkdirSync(join(dir, 'is-a-directory'));
    expect(() => writeAddressFile(join(dir, 'is-a-directory'), 'http://127.0.0.1:1')).toThrow(
      /^cannot write ADDRESS_FILE=".*is-a-directory": EISDIR/,
    );
    expect(readdirSync(dir)).toEqual(['is-a-directory']);
  });
});

describe('scripts/healthcheck.sh', () => {
  it('exits 0 on a 200 from GET /healthz, sent as HTTP/1.0 with the Host header, and says so on one line', async () => {
    const server = await healthServer(200);
    const file = addressFile(`http://127.0.0.1:${server.port}\n`);
    const result = await check({ ADDRESS_FILE: file });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toBe(`healthy: GET http://127.0.0.1:${server.port}/healthz answered HTTP/1.1 200 OK\n`);
    expect(server.requests).toEqual([
      expect.objectContaining({
        method: 'GET',
        url: '/healthz',
        httpVersion: '1.0',
        headers: expect.objectContaining({ host: `127.0.0.1:${server.port}` }),
      }),
    ]);
  });

  it('takes the file from its argument before $ADDRESS_FILE, and reads a file without a final newline', async () => {
    const server = await healthServer(200);
    const file = addressFile(`http://127.0.0.1:${server.port}`);
    expect((await check({ ADDRESS_FILE: join(tempDir(), 'absent') }, [file])).code).toBe(0);
  });

  it('reaches an IPv6 address written in brackets', async (context) => {
    let server: Awaited<ReturnType<typeof healthServer>>;
    try {
      server = await healthServer(200, '::1');
    } catch {
      context.skip(); // no IPv6 loopback on this machine
      return;
    }
    const result = await check({ ADDRESS_FILE: addressFile(`http://[::1]:${server.port}\n`) });
    expect(result.code, result.stderr).toBe(0);
    expect(server.requests[0]!.headers.host).toBe(`[::1]:${server.port}`);
  });

  it.each([
    [503, /^unhealthy: GET http:\/\/127\.0\.0\.1:\d+\/healthz answered HTTP\/1\.1 503 Service Unavailable\n$/],
    [204, /answered HTTP\/1\.1 204 No Content\n$/],
    [500, /answered HTTP\/1\.1 500 Internal Server Error\n$/],
  ])('exits 1 on a %i, naming the status line', async (status, message) => {
    const server = await healthServer(status);
    const result = await check({ ADDRESS_FILE: addressFile(`http://127.0.0.1:${server.port}\n`) });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(message);
  });

  it('exits 1 when nothing listens: connection refused', async () => {
    const server = createNetServer();
    const port = await listen(server);
    await new Promise((resolve) => server.close(resolve));
    const result = await check({ ADDRESS_FILE: addressFile(`http://127.0.0.1:${port}\n`) });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toBe(`unhealthy: cannot connect to 127.0.0.1:${port}: Connection refused\n`);
  });

  it('exits 1 within its 2 s deadline when the server accepts but never answers', async () => {
    const server = createNetServer(() => {}); // holds every connection open, silent
    const port = await listen(server);
    const result = await check({ ADDRESS_FILE: addressFile(`http://127.0.0.1:${port}\n`) });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toBe(`unhealthy: no answer from 127.0.0.1:${port} within 2 s\n`);
    expect(result.ms).toBeLessThan(2900); // inside the image's --timeout=3s
  });

  it('exits 1 when the server closes without answering, or answers something that is not HTTP', async () => {
    const closing = createNetServer((socket) => socket.end());
    const closingPort = await listen(closing);
    const closed = await check({ ADDRESS_FILE: addressFile(`http://127.0.0.1:${closingPort}\n`) });
    expect(closed).toMatchObject({ code: 1 });
    expect(closed.stderr).toBe(`unhealthy: 127.0.0.1:${closingPort} closed the connection without answering\n`);

    const junk = createNetServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n'));
    const junkPort = await listen(junk);
    const answered = await check({ ADDRESS_FILE: addressFile(`http://127.0.0.1:${junkPort}\n`) });
    expect(answered).toMatchObject({ code: 1 });
    expect(answered.stderr).toBe(`unhealthy: GET http://127.0.0.1:${junkPort}/healthz answered SSH-2.0-OpenSSH_9.2\n`);
  });

  it.each([
    [
      'no file',
      (dir: string) => ({ ADDRESS_FILE: join(dir, 'url') }),
      /^unhealthy: no address file .*\/url \(the proxy is not listening yet, or has stopped\)\n$/,
    ],
    ['ADDRESS_FILE unset', () => ({}), /^unhealthy: ADDRESS_FILE is not set/],
    ['ADDRESS_FILE empty', () => ({ ADDRESS_FILE: '' }), /^unhealthy: ADDRESS_FILE is not set/],
    ['an empty file', (dir: string) => ({ ADDRESS_FILE: write(dir, '') }), /holds no http:\/\/host:port URL: \n$/],
    [
      'a directory instead of a file',
      (dir: string) => ({ ADDRESS_FILE: dir }),
      /^unhealthy: cannot read the address file \/.*\n$/,
    ],
    [
      'a file without a URL',
      (dir: string) => ({ ADDRESS_FILE: write(dir, 'localhost:8080\n') }),
      /holds no http:\/\/host:port URL: localhost:8080\n$/,
    ],
    [
      'an https URL',
      (dir: string) => ({ ADDRESS_FILE: write(dir, 'https://127.0.0.1:8443\n') }),
      /holds no http:\/\/host:port URL/,
    ],
    [
      'a URL without a port',
      (dir: string) => ({ ADDRESS_FILE: write(dir, 'http://127.0.0.1\n') }),
      /holds no http:\/\/host:port URL/,
    ],
  ])('exits 1 with one line of reason for %s', async (_, envOf, message) => {
    const result = await check(envOf(tempDir()));
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

function write(dir: string, content: string): string {
  const file = join(dir, 'url');
  writeFileSync(file, content);
  return file;
}
