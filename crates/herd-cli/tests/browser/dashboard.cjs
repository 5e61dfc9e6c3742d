// The dashboard in real headless Chromium, driven by playwright-core (from
// .deps/node, found through NODE_PATH). tests/dashboard.rs starts herd and
// runs:
//
//   node dashboard.cjs MONITOR_URL APP_URL TOKEN WORKERS SCREENSHOT
//
// With PROFILE=1 (perf works here) the profile button must show a
// flamegraph; without, it must say that profiling is not available.
//
// Each step prints one JSON line {"step", "ok", ...figures}; the first
// failure prints {"step", "ok": false, "error"} and exits 1. To add a
// step, add one `step("name", async () => {...})` call below: the helpers
// (cards, waitFor, click, setToken, notice, workerAction) do the rest.
"use strict";

const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [MONITOR, APP, TOKEN, WORKERS_ARG, SCREENSHOT] = process.argv.slice(2);
const WORKERS = Number(WORKERS_ARG);
const ORIGIN = new URL(MONITOR).origin;
const WAIT = 15000;

function out(o) { process.stdout.write(JSON.stringify(o) + "\n"); }
function fail(msg) { throw new Error(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- load on the workers, all the while ----------------------------------
let loading = true;
let served = 0;
async function load() {
  const one = async () => {
    while (loading) {
      try {
        const r = await fetch(APP, { cache: "no-store" });
        await r.text();
        served++;
      } catch (e) {
        await sleep(20);
      }
    }
  };
  await Promise.all([one(), one(), one(), one()]);
}

// ---- page helpers ----------------------------------------------------------
let page;

/** The worker cards now: [{id, pid, state, leaving, rps, cpu, status}]. */
function cards() {
  return page.$$eval(".worker[data-id]", (els) => els.map((e) => ({
    id: Number(e.dataset.id),
    pid: Number(e.dataset.pid),
    state: e.dataset.state,
    leaving: e.dataset.leaving === "true",
    rps: e.querySelector(".w-rps").textContent,
    cpu: e.querySelector('[data-field="cpu"]').textContent,
    status: e.querySelector('[data-field="status"]').textContent,
    rss: e.querySelector('[data-field="rss"]').textContent,
    conns: e.querySelector('[data-field="conns"]').textContent,
    foreign: !e.querySelector(".w-tag").hidden,
    drained: e.dataset.drained === "true",
  })));
}

/** Polls `probe` (async, truthy when done) until it holds or `ms` pass. */
async function waitFor(what, probe, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(25);
  }
}

const notice = () => page.$eval("#notice", (n) => (n.hidden ? "" : n.textContent));

/** Clicks a cluster action button (data-action=NAME). */
async function click(name) { await page.click(`[data-action="${name}"]`); }

/** Clicks a worker's action button (data-worker-action=NAME on card ID). */
async function workerAction(id, name) {
  await page.click(`.worker[data-id="${id}"] [data-worker-action="${name}"]`);
}

async function setToken(t) {
  await page.fill("#token", t);
  await page.click("#token-save");
}

async function waitNotice(re, what, ms = WAIT) {
  return waitFor(`the page says ${what} (${re})`, async () => {
    const n = await notice();
    return re.test(n) ? n : null;
  }, ms);
}

const steps = [];
function step(name, fn) { steps.push([name, fn]); }

// ---- the steps ---------------------------------------------------------------
step("loads with a card per worker", async () => {
  const list = await waitFor(`${WORKERS} worker cards`, async () => {
    const c = await cards();
    return c.length === WORKERS && c.every((w) => w.pid > 0) ? c : null;
  });
  return { workers: list.map((w) => [w.id, w.pid]) };
});

step("numbers change under load", async () => {
  const before = await cards();
  const key = (c) => c.map((w) => `${w.rps}|${w.cpu}|${w.status}`).join(";");
  const after = await waitFor("a card's req/s, CPU or status changes", async () => {
    const c = await cards();
    const moving = c.filter((w) => w.rps !== "–" && Number.parseFloat(w.rps) > 0);
    return key(c) !== key(before) && moving.length > 0 ? c : null;
  });
  // Foreign workers show what they have: STATUS=, and RSS and
  // connections from /proc.
  for (const w of after) {
    if (!w.foreign) fail(`worker ${w.id} is not shown as foreign`);
    if (!/^served \d+$/.test(w.status)) fail(`worker ${w.id}'s STATUS= is not shown: ${w.status}`);
    if (!/iB$/.test(w.rss)) fail(`worker ${w.id}'s RSS is not shown: ${w.rss}`);
    if (!/^\d+$/.test(w.conns)) fail(`worker ${w.id}'s connections are not shown: ${w.conns}`);
  }
  // Enough samples for a sparkline with a shape.
  await waitFor("five frames", async () => Number(await page.$eval("body", (b) => b.dataset.frames || 0)) >= 5);
  return { before: key(before), after: key(after), served };
});

step("a SIGKILLed worker goes and its successor comes within 2 s", async () => {
  const before = await cards();
  const victim = before[0];
  // When the page itself added and removed cards (the wall clock, as
  // Date.now() here): the polling below adds its own delay, not counted.
  await page.evaluate(() => {
    const t = (window.__cards = { added: {}, removed: {} });
    new MutationObserver((muts) => {
      const now = Date.now();
      for (const m of muts) {
        for (const n of m.addedNodes) if (n.dataset && n.dataset.id) t.added[n.dataset.id] ??= now;
        for (const n of m.removedNodes) if (n.dataset && n.dataset.id) t.removed[n.dataset.id] = now;
      }
    }).observe(document.getElementById("workers"), { childList: true });
  });
  const t0 = Date.now();
  process.kill(victim.pid, "SIGKILL");
  const seen = await waitFor("the killed worker's card goes and a successor's comes", async () => {
    const c = await cards();
    const gone = !c.some((w) => w.pid === victim.pid);
    const fresh = c.filter((w) => !before.some((b) => b.id === w.id));
    return gone && fresh.length > 0 ? fresh : null;
  });
  const polled = Date.now() - t0;
  const t = await page.evaluate(() => window.__cards);
  const ms = Math.max(t.removed[victim.id], t.added[seen[0].id]) - t0;
  if (!(ms >= 0)) fail(`no record of the cards' change: ${JSON.stringify(t)}`);
  if (ms > 2000) fail(`the page took ${ms} ms to show the successor (2000 allowed)`);
  const events = await page.$eval("#events", (e) => e.textContent);
  if (!events.includes(`worker ${victim.id} killed by SIGKILL`)) fail(`no exit event for worker ${victim.id}: ${events}`);
  await waitFor(`${WORKERS} ready cards again`, async () => {
    const c = await cards();
    return c.length === WORKERS && c.every((w) => w.state === "ready");
  });
  return { killed: victim.id, successor: seen[0].id, ms, polled };
});

/** The cache card of NAME: its counters as numbers, its ratio and rate. */
function cacheCard(name) {
  return page.$eval(`.cache[data-cache="${name}"]`, (c) => {
    const v = (f) => c.querySelector(`[data-field="${f}"]`).textContent;
    return {
      hits: Number(v("hits")), misses: Number(v("misses")), entries: Number(v("entries")),
      loads: Number(v("loads")), evictions: Number(v("evictions")), lease_timeouts: Number(v("lease_timeouts")),
      bytes: v("bytes"), ratio: v("hit_ratio"), rate: v("hits_per_sec"),
      where: c.querySelector(".svc-tag").textContent,
    };
  }).catch(() => null);
}

step("the cache card's counters move with the workers' gets and sets", async () => {
  const first = await waitFor("the default cache's card", () => cacheCard("default"));
  const moved = await waitFor("hits, misses and hits/s move", async () => {
    const c = await cacheCard("default");
    const rate = Number.parseFloat(c.rate);
    return c.hits > first.hits && c.misses > first.misses && rate > 0 ? c : null;
  });
  // What the page shows is what /status says (read after: only larger).
  const doc = await (await fetch(MONITOR + "/status")).json();
  const st = doc.caches.default;
  if (!(st.hits >= moved.hits && st.misses >= moved.misses)) fail(`the card says ${JSON.stringify(moved)}, /status ${JSON.stringify(st)}`);
  if (moved.entries < 2) fail(`the workers' keys are not counted: ${moved.entries} entries`);
  if (!/^\d+(\.\d)?%hit ratio$/.test(moved.ratio)) fail(`no hit ratio: ${moved.ratio}`);
  if (!/iB$|B$/.test(moved.bytes)) fail(`no bytes: ${moved.bytes}`);
  if (moved.where !== "in the primary") fail(`where: ${moved.where}`);
  if (await page.isVisible("#redis")) fail("a Redis link is shown for a cache in the primary");
  return { first, moved };
});

/** Opens (or refreshes) status NAME's row and waits for its values. */
async function readStatus(name) {
  const row = `.status[data-status="${name}"]`;
  await waitFor(`status ${name} listed`, () => page.isVisible(row));
  const open = await page.$eval(row, (r) => r.dataset.open === "true");
  await page.click(open ? `${row} .status-refresh` : `${row} .status-toggle`);
  await waitFor(`status ${name}'s values`, () => page.$eval(row, (r) => r.dataset.loaded === "yes"));
  return page.$$eval(`${row} tr`, (trs) => trs.map((t) => ({
    kind: t.className, worker: t.dataset.worker, value: t.querySelector("td").textContent,
  })));
}

step("the statuses list shows heartbeat and opening it shows each worker's value", async () => {
  const names = await page.$$eval(".status[data-status]", (l) => l.map((e) => e.dataset.status));
  for (const want of ["heartbeat", "replace_queue"]) if (!names.includes(want)) fail(`${want} not listed: ${names}`);
  const ids = (await cards()).map((w) => String(w.id)).sort();
  let rows = [];
  await waitFor("a heartbeat from every worker", async () => {
    rows = await readStatus("heartbeat");
    const got = rows.filter((r) => r.kind === "answer").map((r) => r.worker).sort();
    return JSON.stringify(got) === JSON.stringify(ids);
  });
  for (const r of rows) {
    const beat = JSON.parse(r.value);
    if (typeof beat.handled !== "number") fail(`worker ${r.worker}'s heartbeat has no handled count: ${r.value}`);
  }
  const queue = await readStatus("replace_queue");
  if (!queue.some((r) => r.kind === "primary")) fail(`replace_queue has no primary row: ${JSON.stringify(queue)}`);
  await page.click('.status[data-status="replace_queue"] .status-toggle');
  return { names, heartbeat: rows.map((r) => r.worker) };
});

step("screenshot under load", async () => {
  await waitFor("twenty frames, for sparklines with a shape", async () => Number(await page.$eval("body", (b) => b.dataset.frames || 0)) >= 20);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  return { path: SCREENSHOT, bytes: fs.statSync(SCREENSHOT).size };
});

step("without the token an action is refused and the page says so", async () => {
  const wanted = await page.textContent("#wanted");
  await click("scale-up");
  const said = await waitNotice(/refused: .*needs the monitor's token/, "the action needs the token");
  await setToken("not-the-token");
  await click("mark-down");
  const wrong = await waitNotice(/refused: the token is wrong/, "the token is wrong");
  await sleep(300);
  if ((await page.textContent("#wanted")) !== wanted) fail("a refused scale changed the worker count");
  if ((await page.textContent("#health")) !== "up") fail("a refused mark down changed the health");
  return { said, wrong };
});

step("mark down and up with the token", async () => {
  await setToken(TOKEN);
  await click("mark-down");
  await waitFor("health draining, marked down", async () =>
    (await page.textContent("#health")) === "draining" && (await page.isVisible("#marked")));
  await click("mark-up");
  await waitFor("health up again", async () =>
    (await page.textContent("#health")) === "up" && !(await page.isVisible("#marked")));
  return {};
});

step("scale up and down", async () => {
  await click("scale-up");
  await waitFor(`${WORKERS + 1} ready cards`, async () => {
    const c = await cards();
    return c.length === WORKERS + 1 && c.every((w) => w.state === "ready");
  });
  await click("scale-down");
  await waitFor(`${WORKERS} cards`, async () => (await cards()).length === WORKERS);
  return {};
});

step("reload shows its progress and ends with every worker new", async () => {
  await waitFor(`${WORKERS} ready cards, none leaving`, async () => {
    const c = await cards();
    return c.length === WORKERS && c.every((w) => w.state === "ready" && !w.leaving);
  });
  const before = await cards();
  const t0 = Date.now();
  await click("reload");
  const progress = await waitFor("the reload's progress", async () =>
    (await page.isVisible("#reload")) ? page.textContent("#reload") : null);
  const done = await waitNotice(/reloaded: \d+ workers replaced/, "the reload finished");
  const after = await waitFor(`${WORKERS} new ready cards`, async () => {
    const c = await cards();
    const fresh = c.length === WORKERS && c.every((w) => w.state === "ready" && !w.leaving);
    return fresh && !c.some((w) => before.some((b) => b.pid === w.pid)) ? c : null;
  });
  if (await page.isVisible("#reload")) fail("the progress is still shown after the reload");
  return { progress: progress.replace(/\s+/g, " ").trim(), done, ms: Date.now() - t0, pids: after.map((w) => w.pid) };
});

step("replace one worker from its card", async () => {
  const before = await cards();
  const victim = before[0];
  await workerAction(victim.id, "replace");
  const said = await waitNotice(new RegExp(`worker ${victim.id}.*replaced|replaced.*${victim.id}`, "i"), "the worker was replaced");
  const after = await waitFor(`worker ${victim.id} gone, ${WORKERS} ready cards`, async () => {
    const c = await cards();
    const ok = c.length === WORKERS && c.every((w) => w.state === "ready" && !w.leaving) && !c.some((w) => w.id === victim.id);
    return ok ? c : null;
  });
  const others = before.slice(1).map((w) => w.pid);
  if (!others.every((pid) => after.some((w) => w.pid === pid))) fail("replacing one worker replaced others too");
  return { said, old: victim.id, now: after.map((w) => w.id) };
});

step("drain of a foreign worker is refused, saying why", async () => {
  const [w] = await cards();
  await workerAction(w.id, "drain");
  const said = await waitNotice(/drain/i, "why the drain is refused");
  if (!/foreign|policy|cannot|not/i.test(said)) fail(`the refusal does not say why: ${said}`);
  const still = await cards();
  if (still.some((c) => c.drained)) fail("a worker shows drained after the refusal");
  return { said };
});

step("profile one worker from its card", async () => {
  const [w] = await cards();
  await workerAction(w.id, "profile");
  if (process.env.PROFILE === "1") {
    const size = await waitFor("the flamegraph shown in the panel", async () => {
      if (!(await page.isVisible("#panel"))) return null;
      return page.$eval("#panel-body img", (i) => (i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0)).catch(() => 0);
    }, 30000);
    const title = await page.textContent("#panel-title");
    await page.click("#panel-close");
    return { title, width: size };
  }
  const said = await waitNotice(/not available/i, "that profiling is not available", 30000);
  return { said };
});

// ---- the run ---------------------------------------------------------------------
(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "herd-dashboard-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const foreign = [];
  let code = 0;
  try {
    page = ctx.pages()[0] || (await ctx.newPage());
    page.on("request", (r) => {
      const u = r.url();
      if (!(u.startsWith(ORIGIN + "/") || u.startsWith("blob:" + ORIGIN) || u.startsWith("data:"))) foreign.push(u);
    });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const loader = load();
    await page.goto(MONITOR + "/debug?profile_seconds=2");
    for (const [name, fn] of steps) {
      const t0 = Date.now();
      try {
        const figures = (await fn()) || {};
        out({ step: name, ok: true, took_ms: Date.now() - t0, ...figures });
      } catch (e) {
        out({ step: name, ok: false, error: e.message, notice: await notice().catch(() => "") });
        code = 1;
        break;
      }
    }
    loading = false;
    await loader;
    if (errors.length) {
      out({ step: "no script errors", ok: false, error: errors.join("; ") });
      code = 1;
    }
    out({ step: "no request to another host", ok: foreign.length === 0, foreign });
    if (foreign.length) code = 1;
  } finally {
    loading = false;
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(code);
})().catch((e) => {
  out({ step: "run", ok: false, error: String(e && e.stack || e) });
  process.exit(1);
});
