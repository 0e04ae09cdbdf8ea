/**
 * Server-Sent Events frames (WHATWG HTML). A body with a raw CR or LF (a custom serializer's, or written into L2
 * by someone else) would end the data line and start fields of its own: JSON is re-encoded on one line, anything
 * else sent as several data lines.
 */
export function eventFrame(id: string, event: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`id: ${id}\nevent: ${event}\n`), dataLines(data), Buffer.from('\n')]);
}

function dataLines(data: Buffer): Buffer {
  if (!data.includes(10) && !data.includes(13)) return Buffer.concat([DATA, data, NEWLINE]);
  const text = data.toString('utf8');
  try {
    return Buffer.from(`data: ${JSON.stringify(JSON.parse(text))}\n`);
  } catch {
    return Buffer.from(
      text
        .split(/\r\n|\r|\n/)
        .map((line) => `data: ${line}\n`)
        .join(''),
    );
  }
}

const DATA = Buffer.from('data: ');
const NEWLINE = Buffer.from('\n');

/** A comment line: keeps idle connections (and the proxies in between) from timing out. */
export const HEARTBEAT = Buffer.from(':\n\n');

/** Tells the client how long to wait before reconnecting, then the stream ends. */
export function retryFrame(ms: number): Buffer {
  return Buffer.from(`retry: ${ms}\n\n`);
}
