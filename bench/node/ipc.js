// The `ipc` benchmark, Node side: the same measurements as
// bench/src/bin/ipc.rs, with Node's cluster and process.send.
//
//   node bench/node/ipc.js [--n N] [--m M] [--warmup W]
//
// Prints KEY VALUE lines: node.tput MSGS_PER_S, node.rtt.mean US,
// node.rtt.p50 US, node.rtt.p99 US.
'use strict';
const cluster = require('node:cluster');

function tick(seq, kind) {
  return { seq, kind, value: seq * 0.5 };
}

if (cluster.isPrimary) {
  const opts = { n: 1000000, m: 20000, warmup: 2000 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(key in opts) || !Number.isInteger(value)) {
      console.error(`ipc.js: bad argument ${argv[i]} ${argv[i + 1]}`);
      process.exit(2);
    }
    opts[key] = value;
  }
  primary(opts).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  // Worker: echo pings; on "flood", send `seq` ticks as fast as send allows
  // (waiting for the channel to drain when process.send says it is backlogged).
  process.on('message', async (msg) => {
    if (msg.kind === 'ping') {
      process.send(msg);
    } else if (msg.kind === 'flood') {
      let ok = true;
      for (let seq = 0; seq < msg.seq; seq++) {
        const t = tick(seq, 'tick');
        if (ok) {
          ok = process.send(t);
        } else {
          await new Promise((resolve) => process.send(t, resolve));
          ok = true;
        }
      }
    }
  });
}

async function primary(opts) {
  const worker = cluster.fork();
  await new Promise((resolve) => worker.once('online', resolve));
  worker.on('exit', (code, signal) => {
    if (!worker.exitedAfterDisconnect) {
      console.error(`worker exited: code ${code} signal ${signal}`);
      process.exit(1);
    }
  });

  // One message handler; each phase installs its own continuation.
  let onMessage = null;
  worker.on('message', (msg) => onMessage(msg));

  // (a) Pipelined worker -> primary, timed from the first arrival to the last.
  const tput = await new Promise((resolve) => {
    let count = 0;
    let start = 0n;
    onMessage = (msg) => {
      if (msg.seq !== count) throw new Error(`out of order: ${msg.seq} != ${count}`);
      if (count === 0) start = process.hrtime.bigint();
      count++;
      if (count === opts.n) {
        const secs = Number(process.hrtime.bigint() - start) / 1e9;
        resolve((opts.n - 1) / secs);
      }
    };
    worker.send(tick(opts.n, 'flood'));
  });

  // (b) Sequential round trips.
  const samples = await new Promise((resolve) => {
    const out = [];
    let i = 0;
    let t0 = 0n;
    const ping = () => {
      t0 = process.hrtime.bigint();
      worker.send(tick(i, 'ping'));
    };
    onMessage = (msg) => {
      const rtt = Number(process.hrtime.bigint() - t0) / 1e3;
      if (msg.seq !== i) throw new Error(`echo out of order: ${msg.seq} != ${i}`);
      if (i >= opts.warmup) out.push(rtt);
      i++;
      if (i === opts.warmup + opts.m) resolve(out);
      else ping();
    };
    ping();
  });

  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.min(Math.floor(samples.length * q), samples.length - 1)];
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  console.log(`node.tput ${tput.toFixed(0)}`);
  console.log(`node.rtt.mean ${mean.toFixed(2)}`);
  console.log(`node.rtt.p50 ${at(0.5).toFixed(2)}`);
  console.log(`node.rtt.p99 ${at(0.99).toFixed(2)}`);
  worker.disconnect();
}
