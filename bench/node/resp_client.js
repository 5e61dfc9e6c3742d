// One RESP client's GET and SET rate against a Unix socket, with ioredis:
//   node resp_client.js SOCKET N DEPTH
// DEPTH commands in flight at once (1: one round trip per command; more:
// ioredis pipelines them). Prints `set <ops/s> get <ops/s>`, and with
// DEPTH 1 each command's latency too: `set.p50 <us> set.p99 <us> get.p50
// <us> get.p99 <us>` (a second pass, timing each command).
const Redis = require("ioredis");
const [path, n, depth] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const r = new Redis({ path, enableAutoPipelining: false });
const value = "x".repeat(64);

async function rate(op) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i += depth) {
    const batch = [];
    for (let j = 0; j < depth && i + j < n; j++) batch.push(op((i + j) % 1000));
    await Promise.all(batch);
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

// Each of `n` sequential commands' latency: `[p50, p99]` in microseconds.
async function latency(op) {
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op(i % 1000);
    lat[i] = Number(process.hrtime.bigint() - t) / 1e3;
  }
  lat.sort();
  return [lat[Math.round((n - 1) * 0.5)], lat[Math.round((n - 1) * 0.99)]];
}

(async () => {
  const set = (k) => r.set(`k${k}`, value);
  const get = (k) => r.get(`k${k}`);
  await rate(set); // warm-up
  let line = `set ${(await rate(set)).toFixed(0)} get ${(await rate(get)).toFixed(0)}`;
  if (depth === 1) {
    const [s50, s99] = await latency(set);
    const [g50, g99] = await latency(get);
    line += ` set.p50 ${s50.toFixed(1)} set.p99 ${s99.toFixed(1)} get.p50 ${g50.toFixed(1)} get.p99 ${g99.toFixed(1)}`;
  }
  console.log(line);
  r.disconnect();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
