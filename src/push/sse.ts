/**
 * Server-Sent Events frames (WHATWG HTML, "Server-sent events"). The data is
 * the profile's JSON on one line: a body with a raw CR or LF (pretty-printed
 * by a custom serializer, or written into L2 by someone else) would otherwise
 * end the data line and start fields of its own, so it is re-encoded on one
 * line, or, if it is not JSON, sent as several data lines as the format says.
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
