import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface BurstAnswer {
  status: number;
  /** The body of an answer with status 400 or above (a JSON error), for its code. */
  errorBody?: string;
  /** From the write of this socket's request to the last byte of its answer, ms. */
  latencyMs: number;
}

export interface BurstResult {
  /** One answer per connection, in connection order. */
  answers: BurstAnswer[];
  /** From the first request's write to the last answer's last byte, ms: the burst's wall time. */
  durationMs: number;
}

/**
 * A load generator for one burst at a time: N keep-alive connections opened
 * up front, then one identical GET written on every one of them in a tight
 * loop. Answers are framed by Content-Length on raw sockets, with no HTTP
 * client in between, so the generator's own cost per answer is a few
 * microseconds and the latency it reports is the server's. (An HTTP client
 * pool adds tens of ms to the tail of a 1000-answer burst on one core.)
 */
export class BurstClient {
  readonly #sockets: Socket[] = [];
  readonly #host: string;

  private constructor(host: string) {
    this.#host = host;
  }

  /** Opens `connections` sockets to a loopback `url` (http://127.0.0.1:port). */
  static async open(url: string, connections: number): Promise<BurstClient> {
    const { hostname, port } = new URL(url);
    if (!/^127\.\d+\.\d+\.\d+$/.test(hostname)) throw new Error(`refusing a non-loopback target: ${url}`);
    const client = new BurstClient(`${hostname}:${port}`);
    // In batches of 100, so the server's accept backlog never overflows.
    for (let opened = 0; opened < connections; opened += 100) {
      const batch = Array.from(
        { length: Math.min(100, connections - opened) },
        () =>
          new Promise<Socket>((resolve, reject) => {
            const socket = connect({ host: hostname, port: Number(port), noDelay: true }, () => resolve(socket));
            socket.once('error', reject);
          }),
      );
      client.#sockets.push(...(await Promise.all(batch)));
    }
    return client;
  }

  /**
   * Writes `GET path` on every connection at once (`path(i)` for the i-th
   * connection when it is a function); resolves when every answer is complete,
   * with the answers and the burst's wall time.
   */
  burst(path: string | ((i: number) => string), timeoutMs = 10_000): Promise<BurstResult> {
    const requestFor = (p: string): Buffer => Buffer.from(`GET ${p} HTTP/1.1\r\nhost: ${this.#host}\r\n\r\n`, 'latin1');
    const requests = typeof path === 'string' ? undefined : this.#sockets.map((_, i) => requestFor(path(i)));
    const same = typeof path === 'string' ? requestFor(path) : undefined;
    const pending = this.#sockets.map((socket) => answerOn(socket));
    const started = new Float64Array(this.#sockets.length);
    const first = performance.now();
    let last = first;
    for (let i = 0; i < this.#sockets.length; i++) {
      started[i] = performance.now();
      this.#sockets[i]!.write(same ?? requests![i]!);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`burst of ${this.#sockets.length} not answered within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    const answers = Promise.all(
      pending.map(async (answer, i) => {
        const { status, at, errorBody } = await answer;
        if (at > last) last = at;
        return errorBody === undefined
          ? { status, latencyMs: at - started[i]! }
          : { status, errorBody, latencyMs: at - started[i]! };
      }),
    );
    const result = answers.then((all) => ({ answers: all, durationMs: last - first }));
    return Promise.race([result, timeout]).finally(() => clearTimeout(timer));
  }

  close(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}

/** Reads one HTTP/1.1 answer framed by Content-Length from `socket`. */
function answerOn(socket: Socket): Promise<{ status: number; at: number; errorBody?: string }> {
  return new Promise((resolve, reject) => {
    let head = '';
    let bodyLeft = -1;
    let status = 0;
    let errorBody: string | undefined;
    const onData = (chunk: Buffer): void => {
      let rest = chunk;
      if (bodyLeft < 0) {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length: *(\d+)/i.exec(head.slice(0, end));
        if (length === null) {
          fail(new Error(`answer without Content-Length: ${head.slice(0, end)}`));
          return;
        }
        bodyLeft = Number(length[1]);
        rest = Buffer.from(head.slice(end + 4), 'latin1');
        if (status >= 400) errorBody = '';
      }
      bodyLeft -= rest.length;
      if (errorBody !== undefined) errorBody += rest.toString('utf8');
      if (bodyLeft > 0) return;
      if (bodyLeft < 0) {
        fail(new Error('more bytes than Content-Length'));
        return;
      }
      socket.off('data', onData).off('error', fail).off('close', onClose);
      resolve(
        errorBody === undefined ? { status, at: performance.now() } : { status, at: performance.now(), errorBody },
      );
    };
    const fail = (error: Error): void => {
      socket.off('data', onData).off('error', fail).off('close', onClose);
      reject(error);
    };
    const onClose = (): void => fail(new Error('connection closed before the answer was complete'));
    socket.on('data', onData).once('error', fail).once('close', onClose);
  });
}
