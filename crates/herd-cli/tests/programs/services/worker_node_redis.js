// A worker that uses the cluster's cache and channels through node-redis
// (the `redis` npm package, v5), pointed at HERD_SERVICES_SOCKET, speaking
// RESP2 or, with HERD_TEST_RESP=3, RESP3 (node-redis sends HELLO 3)
// (crates/herd-cli/tests/services_resp.rs). The same checks and the same
// keys as worker.js: GET/SET/DEL/EXPIRE/TTL/EXISTS/KEYS, then it talks to
// the other worker over PUBLISH/SUBSCRIBE and writes what it heard.
const { createClient } = require("redis");
const path = process.env.HERD_SERVICES_SOCKET;
const id = process.env.HERD_WORKER_ID;
const RESP = Number(process.env.HERD_TEST_RESP || "2");
const r = createClient({ socket: { path, reconnectStrategy: false }, RESP });
const sub = r.duplicate();
r.on("error", (e) => fail(`client: ${e}`));
sub.on("error", (e) => fail(`subscriber: ${e}`));

let failing = false;
function fail(why) {
  if (failing) return;
  failing = true;
  // A fresh client: `r` itself may be what failed.
  const f = createClient({ socket: { path, reconnectStrategy: false } });
  f.on("error", () => {});
  f.connect()
    .then(() => f.set(`fail:${id}`, String(why && why.stack ? why.stack : why)))
    .finally(() => process.exit(1));
}

async function checks() {
  const eq = (got, want, what) => {
    if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  // The protocol node-redis negotiated is the one asked for.
  const hello = await r.sendCommand(["HELLO"]);
  const proto = RESP === 3 ? hello.proto : hello[hello.indexOf("proto") + 1];
  eq(proto, RESP, "HELLO's proto");
  eq(await r.set(`live:${id}`, String(process.pid)), "OK", "SET");
  eq(await r.get(`live:${id}`), String(process.pid), "GET");
  eq(await r.expire(`live:${id}`, 100), 1, "EXPIRE");
  const ttl = await r.ttl(`live:${id}`);
  if (!(ttl > 90 && ttl <= 100)) throw new Error(`TTL ${ttl}`);
  eq(await r.set(`gone:${id}`, "x", { expiration: { type: "PX", value: 60000 } }), "OK", "SET PX");
  eq(await r.del(`gone:${id}`), 1, "DEL");
  eq(await r.get(`gone:${id}`), null, "GET after DEL");
  eq(await r.exists([`live:${id}`, `gone:${id}`]), 1, "EXISTS");
  eq(await r.set(`nx:${id}`, "a", { condition: "NX" }), "OK", "SET NX");
  eq(await r.set(`nx:${id}`, "b", { condition: "NX" }), null, "SET NX again");
  eq(await r.get(`nx:${id}`), "a", "GET after SET NX");
  eq(await r.set(`zero:${id}`, "z"), "OK", "SET");
  eq(await r.expire(`zero:${id}`, 0), 1, "EXPIRE 0 deletes");
  eq(await r.get(`zero:${id}`), null, "GET after EXPIRE 0");
  eq(await r.ttl(`zero:${id}`), -2, "TTL of a missing key");
  const keys = await r.keys(`live:${id}`);
  eq(keys.join(","), `live:${id}`, "KEYS");
  await r.set(`ok:${id}`, "1");
}

(async () => {
  await r.connect();
  await sub.connect();
  await sub.subscribe("chat", (message, channel) => {
    if (channel === "chat" && !message.endsWith(` ${id}`)) r.set(`heard:${id}`, message).catch(fail);
  });
  await checks();
  let beat = 0;
  setInterval(() => {
    beat += 1;
    r.publish("chat", `hello from ${id}`).catch(fail);
    r.set(`beat:${id}`, String(beat)).catch(fail);
  }, 50);
})().catch(fail);

process.on("SIGTERM", () => {
  r.destroy();
  sub.destroy();
  process.exit(0);
});
