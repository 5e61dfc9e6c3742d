// The `cache` benchmark, Node side: cluster2's cache design, a Map held by
// the primary behind process.send, measured from a worker as
// bench/src/bin/cache.rs measures herd and Redis.
//
//   node bench/node/cache.js [--n N] [--conc C]
//
// Prints KEY VALUE lines (times in microseconds): node.tput GETS_PER_S
// (C callers at once), node.hit.mean, node.hit.p50, node.hit.p99,
// node.miss.p50.
'use strict';
const cluster = require('node:cluster');

const opts = { n: 200000, conc: 32 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  const value = Number(argv[i + 1]);
  if (!(key in opts) || !Number.isInteger(value)) {
    console.error(`cache.js: bad argument ${argv[i]} ${argv[i + 1]}`);
    process.exit(2);
  }
  opts[key] = value;
}

if (cluster.isPrimary) {
  // cluster2's primary: the one Map, answering each worker's requests.
  const store = new Map();
  const worker = cluster.fork();
  worker.on('message', (msg) => {
    if (msg.type === 'figures') {
      for (const [k, v] of msg.figures) console.log(`${k} ${v.toFixed(3)}`);
      worker.disconnect();
      return;
    }
    if (msg.type !== 'cache') return;
    let value;
    if (msg.op === 'get') value = store.get(msg.key);
    else if (msg.op === 'set') { store.set(msg.key, msg.value); value = true; }
    worker.send({ type: 'cache', id: msg.id, value });
  });
  worker.on('exit', (code) => process.exit(code));
} else {
  let next = 0;
  const waiting = new Map();
  process.on('message', (msg) => {
    if (msg.type !== 'cache') return;
    const resolve = waiting.get(msg.id);
    waiting.delete(msg.id);
    resolve(msg.value);
  });
  const call = (op, key, value) => new Promise((resolve) => {
    const id = next++;
    waiting.set(id, resolve);
    process.send({ type: 'cache', op, id, key, value });
  });
  const item = {
    id: 42,
    name: 'a cached value of some hundred bytes',
    tags: ['alpha', 'beta', 'gamma'],
  };
  const pct = (sorted, p) => sorted[Math.round((sorted.length - 1) * p)];
  const latencies = async (n, f) => {
    const lat = [];
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      await f();
      lat.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    return lat.sort((a, b) => a - b);
  };
  (async () => {
    await call('set', 'hit', item);
    const per = Math.floor(opts.n / opts.conc);
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: opts.conc }, async () => {
      for (let i = 0; i < per; i++) {
        const v = await call('get', 'hit');
        if (v.id !== 42) throw new Error('wrong value');
      }
    }));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const figures = [['node.tput', (per * opts.conc) / secs]];
    const hit = await latencies(opts.n / 4, () => call('get', 'hit'));
    figures.push(['node.hit.mean', hit.reduce((a, b) => a + b, 0) / hit.length]);
    figures.push(['node.hit.p50', pct(hit, 0.5)]);
    figures.push(['node.hit.p99', pct(hit, 0.99)]);
    const miss = await latencies(opts.n / 4, () => call('get', 'missing'));
    figures.push(['node.miss.p50', pct(miss, 0.5)]);
    process.send({ type: 'figures', figures });
  })().catch((e) => { console.error(e); process.exit(1); });
}
