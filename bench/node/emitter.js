// The `emitter` benchmark, Node side: the same fan-out as
// bench/src/bin/emitter.rs, with Node's cluster: the primary sends each
// event to every worker with worker.send (cluster2's emitter does the same),
// waiting for the channel when send says it is backlogged; each worker
// counts, and reports once it has all N. Paced as herd's side is: each
// worker reports its count every REPORT events, and the primary keeps at
// most WINDOW events ahead of the slowest worker.
//
//   node bench/node/emitter.js [--n N] [--workers W]
//
// Prints node.fanout MSGS_PER_S (deliveries per second: N * W / time).
'use strict';
const cluster = require('node:cluster');

const REPORT = 2048;
const WINDOW = 8192;

if (cluster.isPrimary) {
  const opts = { n: 100000, workers: 8 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(key in opts) || !Number.isInteger(value) || value < 1) {
      console.error(`emitter.js: bad argument ${argv[i]} ${argv[i + 1]}`);
      process.exit(2);
    }
    opts[key] = value;
  }
  primary(opts).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  let n = 0;
  let got = 0;
  process.on('message', (msg) => {
    if (msg.event === 'n') {
      n = msg.payload;
    } else if (msg.event === 'tick') {
      if (msg.payload.seq !== got) throw new Error(`out of order: ${msg.payload.seq} != ${got}`);
      got++;
      if (got % REPORT === 0) process.send({ event: 'progress', payload: got });
      if (got === n) process.send({ event: 'done', payload: got });
    }
  });
  process.send({ event: 'ready', payload: 0 });
}

async function primary(opts) {
  const workers = [];
  let ready = 0;
  let done = 0;
  let start = 0n;
  let finished;
  const counts = new Map();
  let onProgress = null;
  const all = new Promise((resolve) => (finished = resolve));
  await new Promise((resolve) => {
    for (let i = 0; i < opts.workers; i++) {
      const w = cluster.fork();
      workers.push(w);
      w.on('message', (msg) => {
        if (msg.event === 'ready' && ++ready === opts.workers) resolve();
        if (msg.event === 'progress') {
          counts.set(i, msg.payload);
          if (onProgress) onProgress();
        }
        if (msg.event === 'done') {
          if (msg.payload !== opts.n) throw new Error(`got ${msg.payload} of ${opts.n}`);
          if (++done === opts.workers) finished();
        }
      });
    }
  });
  for (const w of workers) w.send({ event: 'n', payload: opts.n });
  // As ipc.js does: after a send that says the channel is backlogged,
  // the next one to that worker waits for its callback.
  const ok = workers.map(() => true);
  start = process.hrtime.bigint();
  const slowest = () => (counts.size < workers.length ? 0 : Math.min(...counts.values()));
  for (let seq = 0; seq < opts.n; seq++) {
    while (seq >= WINDOW && slowest() + WINDOW <= seq) {
      await new Promise((resolve) => (onProgress = resolve));
      onProgress = null;
    }
    const msg = { event: 'tick', payload: { seq, kind: 'tick', value: seq * 0.5 } };
    for (let i = 0; i < workers.length; i++) {
      if (ok[i]) {
        ok[i] = workers[i].send(msg);
      } else {
        await new Promise((resolve) => workers[i].send(msg, resolve));
        ok[i] = true;
      }
    }
  }
  await all;
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`node.fanout ${((opts.n * opts.workers) / secs).toFixed(0)}`);
  for (const w of workers) w.disconnect();
}
