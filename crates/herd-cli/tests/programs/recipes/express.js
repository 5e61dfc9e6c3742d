// The Express recipe (docs/recipes.md): serves fd 3 and stops without
// dropping a keep-alive request. Node's server.close() closes idle
// keep-alive connections at once (Node 19+); this stops accepting, answers
// with `Connection: close`, closes idle connections only after a linger and
// exits when the last one is closed.
'use strict';
const express = require('express');
const net = require('node:net');

const LINGER_MS = 1000;
let closing = false;
const app = express();
app.use((req, res, next) => {
  if (closing) res.set('Connection', 'close');
  next();
});
app.get('/pid', (req, res) => res.type('text').send(`${process.pid}`));
app.get('/', (req, res) => res.type('text').send(`hello from ${process.pid}\n`));

const server = app.listen({ fd: 3 });
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  net.Server.prototype.close.call(server, () => process.exit(0)); // stop accepting
  setTimeout(() => setInterval(() => server.closeIdleConnections(), 100), LINGER_MS);
});
