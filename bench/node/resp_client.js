// One RESP client's GET and SET rate against a Unix socket, with ioredis:
//   node resp_client.js SOCKET N DEPTH
// DEPTH commands in flight at once (1: one round trip per command; more:
// ioredis pipelines them). Prints `set <ops/s> get <ops/s>`.
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

(async () => {
  await rate((k) => r.set(`k${k}`, value)); // warm-up
  const set = await rate((k) => r.set(`k${k}`, value));
  const get = await rate((k) => r.get(`k${k}`));
  console.log(`set ${set.toFixed(0)} get ${get.toFixed(0)}`);
  r.disconnect();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
