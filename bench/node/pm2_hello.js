// The reload benchmark's app for PM2 cluster mode: the same `hello world`
// as bench/src/bin/hello_supervised.rs, written as PM2's documentation asks
// for zero-downtime reloads (pm2.keymetrics.io/docs/usage/signals-clean-restart):
//
// - it says `ready` once it listens (started with --wait-ready, so PM2
//   waits for it before stopping the old worker);
// - on SIGINT, PM2's stop signal, it stops accepting and exits once its
//   open requests are done (server.close), within PM2's kill timeout.
//
//   PORT=8080 pm2 start pm2_hello.js -i 2 --wait-ready
'use strict';

const http = require('node:http');

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('pm2_hello: set PORT');
  process.exit(2);
}

const server = http.createServer((_req, res) => {
  res.end('hello world');
});

server.listen(port, '127.0.0.1', () => {
  if (process.send) process.send('ready');
});

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
