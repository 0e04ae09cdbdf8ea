import type { Server } from 'node:http';
import type { Socket } from 'node:net';

interface Progress {
  /** Bytes handed on from Node's buffer so far (bytesWritten counts buffered ones too). */
  flushed: number;
  /** When the answers last moved while some were waiting; NaN while none wait. */
  since: number;
}

/**
 * Closes connections whose answers have waited `timeoutMs` without a byte leaving Node's buffer: a client that never
 * reads is ended by no other timeout. One coarse timer checks them all; a slow client that keeps reading is never cut.
 */
export function closeStalledWrites(server: Server, timeoutMs: number): { stop(): void } {
  const connections = new Map<Socket, Progress>();
  server.on('connection', (socket: Socket) => {
    connections.set(socket, { flushed: 0, since: Number.NaN });
    socket.once('close', () => connections.delete(socket));
  });
  const timer = setInterval(
    () => {
      const now = performance.now();
      for (const [socket, progress] of connections) {
        const pending = socket.writableLength;
        if (pending === 0) {
          progress.since = Number.NaN;
          continue;
        }
        const flushed = (socket.bytesWritten ?? 0) - pending;
        if (flushed !== progress.flushed || Number.isNaN(progress.since)) {
          progress.flushed = flushed;
          progress.since = now;
        } else if (now - progress.since >= timeoutMs) {
          connections.delete(socket);
          socket.destroy();
        }
      }
    },
    Math.min(1000, Math.max(25, Math.floor(timeoutMs / 4))),
  );
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** A tenth of `requestTimeout`, in [25 ms, 1 s]: Node's default check (30 s) let a 4 s REQUEST_TIMEOUT_MS run 29 s. */
export function connectionsCheckingInterval(requestTimeoutMs: number): number {
  return Math.min(1000, Math.max(25, Math.floor(requestTimeoutMs / 10)));
}
