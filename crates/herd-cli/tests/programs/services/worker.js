// A worker that uses the cluster's cache and channels through ioredis,
// pointed at HERD_SERVICES_SOCKET (crates/herd-cli/tests/services_resp.rs).
// It checks GET/SET/DEL/EXPIRE/TTL, then talks to the other worker over
// PUBLISH/SUBSCRIBE and writes what it heard into the cache.
const Redis = require("ioredis");
const path = process.env.HERD_SERVICES_SOCKET;
const id = process.env.HERD_WORKER_ID;
const r = new Redis({ path });
const sub = new Redis({ path });

function fail(why) {
  r.set(`fail:${id}`, String(why)).finally(() => process.exit(1));
}

async function checks() {
  const eq = (got, want, what) => {
    if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  eq(await r.set(`live:${id}`, String(process.pid)), "OK", "SET");
  eq(await r.get(`live:${id}`), String(process.pid), "GET");
  eq(await r.expire(`live:${id}`, 100), 1, "EXPIRE");
  const ttl = await r.ttl(`live:${id}`);
  if (!(ttl > 90 && ttl <= 100)) throw new Error(`TTL ${ttl}`);
  eq(await r.set(`gone:${id}`, "x", "PX", 60000), "OK", "SET PX");
  eq(await r.del(`gone:${id}`), 1, "DEL");
  eq(await r.get(`gone:${id}`), null, "GET after DEL");
  eq(await r.exists(`live:${id}`, `gone:${id}`), 1, "EXISTS");
  eq(await r.set(`nx:${id}`, "a", "NX"), "OK", "SET NX");
  eq(await r.set(`nx:${id}`, "b", "NX"), null, "SET NX again");
  eq(await r.set(`zero:${id}`, "z"), "OK", "SET");
  eq(await r.expire(`zero:${id}`, 0), 1, "EXPIRE 0 deletes");
  eq(await r.get(`zero:${id}`), null, "GET after EXPIRE 0");
  const keys = await r.keys(`live:${id}`);
  eq(keys.join(","), `live:${id}`, "KEYS");
  await r.set(`ok:${id}`, "1");
}

sub.on("message", (channel, message) => {
  if (channel === "chat" && !message.endsWith(` ${id}`)) r.set(`heard:${id}`, message).catch(fail);
});

(async () => {
  await sub.subscribe("chat");
  await checks();
  let beat = 0;
  setInterval(() => {
    beat += 1;
    r.publish("chat", `hello from ${id}`).catch(fail);
    r.set(`beat:${id}`, String(beat)).catch(fail);
  }, 50);
})().catch(fail);

process.on("SIGTERM", () => {
  r.disconnect();
  sub.disconnect();
  process.exit(0);
});
