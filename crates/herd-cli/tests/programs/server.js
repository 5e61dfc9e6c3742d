// A Node.js HTTP server for `herd run`: it serves the socket herd passes
// at descriptor 3 (systemd socket activation) and stops the way a server
// under a rolling restart should, without failing a request:
//
// - on SIGTERM it stops accepting (closes only its listening socket; the
//   other workers keep serving the port) and answers every further request
//   with `Connection: close`, so keep-alive clients move to another worker;
// - idle keep-alive connections are closed only after LINGER_MS, so that a
//   client that just sent its next request on one gets an answer, not a
//   reset (closing an idle connection races with the client reusing it);
// - it exits once its last connection is closed.
//
// Node's own `server.close()` closes idle connections at once (Node 19+),
// which loses that race: hence `net.Server.prototype.close` below.
//
// Responses: `hello from PID` (path /), `PID` (path /pid).
// Env: READY_NOTIFY=1 sends READY=1 on NOTIFY_SOCKET once listening.
'use strict';
const http = require('node:http');
const net = require('node:net');

const LINGER_MS = Number(process.env.LINGER_MS || 1000);
let closing = false;
const server = http.createServer((req, res) => {
  if (closing) res.setHeader('Connection', 'close');
  const body = req.url === '/pid' ? `${process.pid}` : `hello from ${process.pid}\n`;
  res.setHeader('Content-Type', 'text/plain');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
});
server.keepAliveTimeout = 30000;

server.listen({ fd: 3 }, () => {
  console.log(`worker ${process.env.HERD_WORKER_ID} (pid ${process.pid}) serving fd 3 (LISTEN_PID=${process.env.LISTEN_PID}, LISTEN_FDNAMES=${process.env.LISTEN_FDNAMES})`);
  if (process.env.READY_NOTIFY === '1' && process.env.NOTIFY_SOCKET) {
    // Node has no datagram Unix sockets: a tiny helper would do; the tests
    // use Python for notify. Nothing to do here.
  }
});

process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  net.Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), LINGER_MS).unref();
  setInterval(() => server.closeIdleConnections(), 100).unref();
});
