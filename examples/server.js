// A Node.js server for `herd run`: it serves the socket herd passes at
// descriptor 3, and stops on SIGTERM without failing a request.
//
//   herd run -w 2 -l 127.0.0.1:8080 -- node examples/server.js
'use strict';
const http = require('node:http');
const net = require('node:net');

// INSTANCE, when set, names this host in every answer (to
// tell two herd hosts apart behind a load balancer).
const instance = process.env.INSTANCE;
const on = instance ? ` on ${instance}` : '';

let closing = false;
const server = http.createServer((req, res) => {
  // While stopping, tell keep-alive clients to move on.
  if (closing) res.setHeader('Connection', 'close');
  res.end(`hello from worker ${process.env.HERD_WORKER_ID}${on}\n`);
});
server.listen({ fd: 3 });

process.on('SIGTERM', () => {
  closing = true;
  // Stop accepting, but keep open connections: Node's server.close()
  // would also close idle keep-alive ones at once, racing with clients
  // that just sent their next request on them (they would see a reset).
  net.Server.prototype.close.call(server, () => process.exit(0));
  // After a linger, close what is still idle.
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
