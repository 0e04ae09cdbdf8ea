// The yardstick of the hot-path benchmark: a bare node:http server answering
// every request with fixed bytes and headers (those of a proxy L1 hit, passed
// in as JSON on argv). No routing, no cache, no framework.
import { createServer } from 'node:http';

const { headers, body } = JSON.parse(process.argv[2]);
const bytes = Buffer.from(body, 'base64');
const server = createServer((_req, res) => {
  res.writeHead(200, headers);
  res.end(bytes);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'bare server listening', url: `http://127.0.0.1:${server.address().port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
