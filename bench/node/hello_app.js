// The foreign-worker benchmark's app: a plain Node http hello world, the
// same file under every manager (herd run, Node's cluster, PM2).
//
// - Under `herd run` it serves the socket passed at descriptor 3
//   (LISTEN_FDS, systemd socket activation); otherwise it listens on
//   127.0.0.1:$PORT (Node's cluster and PM2 share that port for it).
// - With COUNT_DIR set it writes `REQUESTS CONNECTIONS` to COUNT_DIR/PID
//   every 200 ms, for the per-worker spread.
// - On SIGTERM it stops as README.md recommends for herd: stop accepting,
//   answer with `Connection: close`, close idle keep-alive connections
//   after a linger, exit when the last one is closed.
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');

let requests = 0;
let connections = 0;
let closing = false;
const server = http.createServer((_req, res) => {
  requests++;
  const headers = { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 11 };
  if (closing) headers.Connection = 'close';
  res.writeHead(200, headers);
  res.end('hello world');
});
server.on('connection', () => connections++);

const dir = process.env.COUNT_DIR;
if (dir) {
  setInterval(() => fs.writeFileSync(`${dir}/${process.pid}`, `${requests} ${connections}\n`), 200).unref();
}

if (process.env.LISTEN_FDS) server.listen({ fd: 3 });
else server.listen(Number(process.env.PORT), '127.0.0.1');

process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  net.Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
