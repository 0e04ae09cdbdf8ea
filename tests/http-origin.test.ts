import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpOrigin, NOT_FOUND } from '../src/index.js';

let server: Server | undefined;
let origin: HttpOrigin | undefined;

afterEach(async () => {
  await origin?.close();
  server?.closeAllConnections();
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = origin = undefined;
});

/** A real upstream on a free loopback port; counts the TCP connections it accepts. */
async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen = { connections: 0, requests: [] as IncomingMessage[] };
  server = createServer((req, res) => {
    seen.requests.push(req);
    handler(req, res);
  });
  server.on('connection', () => seen.connections++);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const context = () => ({ signal: new AbortController().signal });

describe('HttpOrigin over node:http', () => {
  it('reuses one keep-alive connection, sends only its own headers and maps 404 to NOT_FOUND', async () => {
    const { url, seen } = await upstream((req, res) => {
      if (req.url === '/groups/404') return res.writeHead(404).end('gone');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: req.url!.split('/').pop() }));
    });
    origin = new HttpOrigin({ url });
    for (const id of ['1', '2', '404', '3']) {
      const loaded = await origin.load(id, context());
      expect(loaded).toEqual(id === '404' ? NOT_FOUND : { id });
    }
    expect(seen.connections).toBe(1);
    expect(Object.keys(seen.requests[0]!.headers).sort()).toEqual(['accept', 'connection', 'host', 'user-agent']);
  });

  it('never opens more than `connections` connections', async () => {
    const { url, seen } = await upstream((_req, res) => setTimeout(() => res.end('{}'), 20));
    origin = new HttpOrigin({ url, connections: 2 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => origin!.load(String(i + 1), context())));
    expect(seen.requests).toHaveLength(10);
    expect(seen.connections).toBe(2);
  });

  it('fails a body cut short by the upstream as UPSTREAM_UNREACHABLE, and a hung one as UPSTREAM_TIMEOUT', async () => {
    const { url } = await upstream((req, res) => {
      if (req.url === '/groups/1') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('{"id":');
        setTimeout(() => res.destroy(), 10);
      }
      // /groups/2: never answers.
    });
    origin = new HttpOrigin({ url, timeoutMs: 100 });
    await expect(origin.load('1', context())).rejects.toMatchObject({ code: 'UPSTREAM_UNREACHABLE', status: 502 });
    await expect(origin.load('2', context())).rejects.toMatchObject({ code: 'UPSTREAM_TIMEOUT', status: 504 });
  });

  it('refuses a body over maxBodyBytes, declared or streamed', async () => {
    const { url } = await upstream((req, res) => {
      if (req.url === '/groups/1') return res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000));
      res.writeHead(200);
      res.write('x'.repeat(3000));
      res.end('x'.repeat(3000));
    });
    origin = new HttpOrigin({ url, maxBodyBytes: 4096 });
    await expect(origin.load('1', context())).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
    await expect(origin.load('2', context())).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
  });
});
