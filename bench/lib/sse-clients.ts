/**
 * The load generator of the `push` benchmark, in a process of its own: COUNT
 * clients against URLS (round-robin), each either holding one event stream
 * (MODE=stream) or polling GET /groups/{id} every POLL_MS (MODE=poll); client
 * i follows group BASE_ID + (i % GROUPS). Talks over stdin/stdout lines:
 *   → `ready <n>` once every stream has its first event (or every poller its first answer);
 *   ← `mark`, → `arrived <json ms[]>`: for each stream, when its next event arrived (epoch ms);
 *   ← `change <revision> <epoch ms>`: the group's revision becomes <revision> at that time;
 *   ← `report`, → `report <json>`: requests sent, and per change the delays until each client saw it;
 *   ← `quit`.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const urls = process.env.URLS!.split(',');
const count = Number(process.env.COUNT);
const groups = Number(process.env.GROUPS ?? 1);
const baseId = Number(process.env.BASE_ID ?? 42);
const mode = process.env.MODE ?? 'stream';
const pollMs = Number(process.env.POLL_MS ?? 5000);
const now = (): number => performance.timeOrigin + performance.now();
/** Revisions are only needed to time changes (the polling comparison); the fan-out runs skip the parse. */
const trackRevisions = process.env.TRACK_REVISIONS === 'on';
const HEADERS_END = Buffer.from('\r\n\r\n');
const DATA = Buffer.from('\ndata: ');
const EVENT_END = Buffer.from('\n\n');

interface Client {
  group: number;
  events: number;
  /** Highest revision seen, and when each was first seen. */
  revision: number;
  seen: Map<number, number>;
  markAt: number | undefined;
  arrivedAt: number | undefined;
}

const clients: Client[] = [];
let requests = 0;
const changes = new Map<number, number>();

/**
 * One stream on a raw socket: the load generator must not be what is
 * measured, and an HTTP client's per-chunk machinery costs more than the
 * proxy's per-subscriber write. Chunked framing is skipped over: only event
 * boundaries and the revision in the data are looked at.
 */
function openStream(client: Client, url: string): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    requests++;
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `GET /groups/${client.group}/events HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`,
      );
    });
    // Raw bytes, no string per chunk: an event nearly always arrives whole, in a chunk of its own.
    let pending: Buffer | undefined;
    let headers = true;
    socket.on('data', (chunk: Buffer) => {
      let buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      if (headers) {
        const end = buffer.indexOf(HEADERS_END);
        if (end === -1) {
          pending = buffer;
          return;
        }
        if (buffer.subarray(0, 12).toString('latin1') !== 'HTTP/1.1 200')
          reject(new Error(`stream answered ${buffer.subarray(0, 12).toString('latin1')}`));
        headers = false;
        buffer = buffer.subarray(end + 4);
      }
      let start = 0;
      for (let data = buffer.indexOf(DATA, start); data !== -1; data = buffer.indexOf(DATA, start)) {
        const end = buffer.indexOf(EVENT_END, data);
        if (end === -1) break;
        const at = now();
        client.events++;
        if (client.markAt !== undefined && client.arrivedAt === undefined) client.arrivedAt = at;
        if (trackRevisions) {
          const revision = /"revision":(\d+)/.exec(buffer.subarray(data, end).toString('latin1'))?.[1];
          if (revision !== undefined) see(client, Number(revision), at);
        }
        if (client.events === 1) resolve();
        start = end + 2;
      }
      if (start < buffer.length) pending = buffer.subarray(start);
    });
    socket.on('error', reject);
  });
}

function see(client: Client, revision: number, at: number): void {
  if (revision > client.revision) client.revision = revision;
  if (!client.seen.has(revision)) client.seen.set(revision, at);
}

async function poll(client: Client, url: string, first: () => void): Promise<void> {
  let firstDone = false;
  // Spread the polls over the interval, as independent clients would be.
  await new Promise((resolve) => setTimeout(resolve, Math.random() * pollMs));
  for (;;) {
    const body = await new Promise<string>((resolve, reject) => {
      requests++;
      const req = request(`${url}/groups/${client.group}`, { agent: pollAgent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    const revision = /"revision":(\d+)/.exec(body)?.[1];
    if (revision !== undefined) see(client, Number(revision), now());
    if (!firstDone) {
      firstDone = true;
      first();
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

const { Agent } = await import('node:http');
const pollAgent = new Agent({ keepAlive: true, maxSockets: 256 });

async function main(): Promise<void> {
  for (let i = 0; i < count; i++)
    clients.push({
      group: baseId + (i % groups),
      events: 0,
      revision: -1,
      seen: new Map(),
      markAt: undefined,
      arrivedAt: undefined,
    });
  if (mode === 'stream') {
    // In waves, so the accept queue never overflows.
    for (let i = 0; i < clients.length; i += 500)
      await Promise.all(clients.slice(i, i + 500).map((client, j) => openStream(client, urls[(i + j) % urls.length]!)));
    process.stdout.write(`ready ${clients.length}\n`);
  } else {
    let started = 0;
    for (const [i, client] of clients.entries()) {
      void poll(client, urls[i % urls.length]!, () => {
        if (++started === clients.length) process.stdout.write(`ready ${clients.length}\n`);
      });
    }
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, ...args] = line.split(' ');
  if (command === 'mark') {
    const at = now();
    for (const client of clients) {
      client.markAt = at;
      client.arrivedAt = undefined;
    }
    const check = setInterval(() => {
      if (clients.some((client) => client.arrivedAt === undefined) && now() - at < 30_000) return;
      clearInterval(check);
      process.stdout.write(`arrived ${JSON.stringify(clients.map((client) => client.arrivedAt ?? Number.NaN))}\n`);
    }, 5);
  } else if (command === 'change') {
    changes.set(Number(args[0]), Number(args[1]));
  } else if (command === 'report') {
    const delays: number[] = [];
    let missed = 0;
    for (const [revision, at] of changes) {
      for (const client of clients) {
        const seenAt = [...client.seen].find(([r]) => r >= revision)?.[1];
        if (seenAt === undefined) missed++;
        else delays.push(seenAt - at);
      }
    }
    process.stdout.write(`report ${JSON.stringify({ requests, delays, missed })}\n`);
  } else if (command === 'quit') {
    process.exit(0);
  }
});

await main();
