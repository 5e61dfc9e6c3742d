// The fastify recipe (docs/recipes.md): serves fd 3 and stops without
// dropping a keep-alive request. Node's server.close() closes idle
// keep-alive connections at once; this stops accepting, answers with
// `Connection: close`, closes idle connections only after a linger and
// exits when the last one is closed, after fastify.close() has run the
// onClose hooks (it leaves the server alone, as the app listened on it
// itself; return503OnClosing: false, should it run earlier, keeps it from
// answering 503).
'use strict';
const fastify = require('fastify')({ return503OnClosing: false });
const net = require('node:net');

const LINGER_MS = 1000;
let closing = false;
fastify.addHook('onSend', async (req, reply) => {
  if (closing) reply.header('Connection', 'close');
});
fastify.get('/pid', async () => `${process.pid}`);
fastify.get('/', async () => `hello from ${process.pid}\n`);

fastify.ready().then(() => fastify.server.listen({ fd: 3 }));
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  const drained = new Promise((done) => net.Server.prototype.close.call(fastify.server, done)); // stop accepting
  setTimeout(() => setInterval(() => fastify.server.closeIdleConnections(), 100), LINGER_MS).unref();
  drained.then(() => fastify.close()).then(() => process.exit(0));
});
