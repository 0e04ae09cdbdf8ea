import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await stack?.close();
  stack = undefined;
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
    sockets.push(socket);
  });
}

/** Resolves with how the server ended the connection, or 'open' if it still is after `boundMs`. */
function ended(socket: Socket, boundMs: number): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('open'), boundMs);
    socket.on('error', () => {}); // a reset is an ending too
    socket.resume(); // a client only learns of the server's close by reading
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

describe('client connections', () => {
  it('closes a connection whose request does not arrive within REQUEST_TIMEOUT_MS, not at Node’s 30 s check', async () => {
    stack = await startStack({ latencyMs: 0 }, { requestTimeoutMs: 400 });
    const slowloris = await open(stack.proxy.port);
    slowloris.write('GET /groups/1 HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
    // Bound: 10× the timeout. Node's default connection check runs every 30 s.
    expect(await ended(slowloris, 4_000)).toBe('closed');
  });

  it('closes connections of clients that never read their answers, so they cannot hold MAX_CONNECTIONS', async () => {
    stack = await startStack({ latencyMs: 0 }, { stalledWriteTimeoutMs: 300, maxConnections: 4 });
    expect((await stack.get('/groups/1')).status).toBe(200); // a hit from now on
    await stack.client.destroy(); // the test's pool must not hold one of the four connections
    stack.client.close = async () => {}; // already closed for stack.close()
    const pipelined = Buffer.from('GET /groups/1 HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(20_000));
    const nonReaders = await Promise.all(Array.from({ length: 4 }, () => open(stack!.proxy.port)));
    for (const socket of nonReaders) {
      socket.pause(); // never reads: the answers pile up in the kernel, then in the server
      socket.write(pipelined);
    }
    // The four fill MAX_CONNECTIONS: a new client gets in only once the server has closed one of them,
    // and four new clients kept open side by side only once it has closed all four.
    // Bound: about 30× the stall timeout each; without the guard they stay open for good.
    for (let i = 0; i < 4; i++) expect(await firstAnswer(stack.proxy.port, 10_000)).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('keeps a connection that is slow to read but reading', async () => {
    stack = await startStack({ latencyMs: 0 }, { stalledWriteTimeoutMs: 300 });
    await stack.get('/groups/1');
    const reader = await open(stack.proxy.port);
    reader.pause();
    reader.write(Buffer.from('GET /groups/1 HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(20_000)));
    let answers = 0;
    let received = '';
    const done = new Promise<void>((resolve, reject) => {
      reader.setEncoding('latin1');
      reader.on('data', (chunk: string) => {
        received += chunk;
        for (let at = received.indexOf('HTTP/1.1 200 '); at !== -1; at = received.indexOf('HTTP/1.1 200 ')) {
          answers++;
          received = received.slice(at + 13);
        }
        if (answers === 20_000) resolve();
      });
      reader.once('close', () => reject(new Error(`closed after ${answers} answers`)));
    });
    // Reads a little at a time, well within the stall timeout each time.
    for (let i = 0; i < 100_000 && answers < 20_000; i++) {
      reader.resume();
      await new Promise((resolve) => setImmediate(resolve));
      reader.pause();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    reader.resume();
    await done;
    expect(answers).toBe(20_000);
  });
});

/** Connects until a connection is let in and answers `GET /groups/1` (then keeps it open); its status line and headers, or throws after `boundMs`. */
async function firstAnswer(port: number, boundMs: number): Promise<string> {
  const deadline = performance.now() + boundMs;
  while (performance.now() < deadline) {
    const answer = await new Promise<string | undefined>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET /groups/1 HTTP/1.1\r\nHost: x\r\n\r\n'));
      let received = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        received += chunk;
        if (received.includes('\r\n\r\n')) {
          sockets.push(socket); // kept open: it holds its place among MAX_CONNECTIONS
          resolve(received);
        }
      });
      socket.on('error', () => {});
      socket.once('close', () => resolve(undefined));
    });
    if (answer !== undefined) return answer;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no connection let in within ${boundMs} ms`);
}
