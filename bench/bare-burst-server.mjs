// The floor of the cold-burst benchmark: an ideal coalescing server with no
// cache, no framework and no upstream. Every request for /groups/* waits on one
// shared timer of ORIGIN_MS (as on one coalesced origin call), then all are
// answered with fixed bytes. Whatever latency this shows beyond ORIGIN_MS is
// the load generator and the machine, not a proxy.
import { createServer } from 'node:http';

const originMs = Number(process.env.ORIGIN_MS ?? 50);
const body = Buffer.alloc(1300, 'x');
let waiting = [];
let timer;
const server = createServer((req, res) => {
  if (!req.url.startsWith('/groups/')) return res.end('ok');
  waiting.push(res);
  if (timer !== undefined) return;
  timer = setTimeout(() => {
    const all = waiting;
    waiting = [];
    timer = undefined;
    for (const r of all) {
      r.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length) });
      r.end(body);
    }
  }, originMs);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () =>
  console.log(JSON.stringify({ msg: 'bare burst server listening', url: `http://127.0.0.1:${server.address().port}` })),
);
process.on('SIGTERM', () => process.exit(0));
