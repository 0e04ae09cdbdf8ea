/**
 * Server-Sent Events frames (WHATWG HTML, "Server-sent events"). Data lines
 * are the profile's JSON, which never holds a raw newline.
 */
export function eventFrame(id: string, event: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`id: ${id}\nevent: ${event}\ndata: `), data, Buffer.from('\n\n')]);
}

/** A comment line: keeps idle connections (and the proxies in between) from timing out. */
export const HEARTBEAT = Buffer.from(':\n\n');

/** Tells the client how long to wait before reconnecting, then the stream ends. */
export function retryFrame(ms: number): Buffer {
  return Buffer.from(`retry: ${ms}\n\n`);
}
