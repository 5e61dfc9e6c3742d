// herd's dashboard: turns one snapshot from /debug/events into the page.
// Every value goes in with textContent (never as HTML); a worker's card is
// made once and updated in place, so a button is never replaced under the
// pointer.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function set(node, text) {
  const t = text === null || text === undefined ? "–" : String(text);
  if (node.textContent !== t) node.textContent = t;
}

const fmt = {
  bytes(n) {
    if (n === null || n === undefined) return null;
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
  },
  secs(s) {
    if (s === null || s === undefined) return null;
    s = Math.floor(s);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m" + String(s % 60).padStart(2, "0") + "s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h" + String(m % 60).padStart(2, "0") + "m";
    return Math.floor(h / 24) + "d" + (h % 24) + "h";
  },
  rate(r) {
    if (r === null || r === undefined) return null;
    return r >= 100 ? r.toFixed(0) : r.toFixed(1);
  },
  ms(v) { return v === null || v === undefined ? null : (v >= 10 ? v.toFixed(0) : v.toFixed(2)) + " ms"; },
  pct(v) { return v === null || v === undefined ? null : v.toFixed(v >= 10 ? 0 : 1) + "%"; },
  exit(e) {
    if (!e) return null;
    const st = e.status || {};
    const how = st.signal ? st.signal : st.code !== null && st.code !== undefined ? "code " + st.code : "exited";
    return `worker ${e.worker}: ${how}, ${e.reason} (${fmt.secs(e.ago_secs)} ago)`;
  },
  clock(ms) {
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  },
};

// The state a person reads: the slot's view first, then the core's.
function stateOf(w, slot) {
  if (w.drained) return "drained";
  if (w.leaving) return "draining";
  if (slot && slot.successor === w.id) return "warming";
  if (slot && slot.state === "replacing" && slot.worker === w.id) return "being replaced";
  return w.state === "none" ? "forked" : w.state;
}

// The last minutes of req/s (the monitor keeps 180 samples a worker), on
// a window that grows with what there is, from 30 samples.
function sparkline(svg, values) {
  const n = Math.max(30, Math.min(180, values.length));
  const pts = values.slice(-n).map((v) => (v === null ? 0 : v));
  const max = Math.max(1, ...pts);
  const w = 100, h = 30;
  const step = pts.length > 1 ? w / (n - 1) : 0;
  const off = (n - pts.length) * step;
  const xy = pts.map((v, i) => `${(off + i * step).toFixed(1)},${(h - (v / max) * (h - 2) - 1).toFixed(1)}`);
  const line = svg.querySelector("polyline");
  const area = svg.querySelector("polygon");
  line.setAttribute("points", xy.join(" "));
  area.setAttribute("points", xy.length ? `${off.toFixed(1)},${h} ${xy.join(" ")} ${w},${h}` : "");
}

function makeSpark() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.appendChild(document.createElementNS(SVG, "polygon"));
  svg.appendChild(document.createElementNS(SVG, "polyline"));
  return svg;
}

const STATS = [
  ["uptime", "uptime"], ["rss", "RSS"], ["cpu", "CPU"],
  ["p99", "p99"], ["conns", "conns"], ["restarts", "restarts"],
];

// The per-worker actions: [name, label, shown when]. The page's app.js
// binds a click on [data-worker-action] to the monitor's route.
const WORKER_ACTIONS = [
  ["drain", "Drain", (w) => !w.drained],
  ["undrain", "Undrain", (w) => !!w.drained],
  ["replace", "Replace", () => true],
  ["profile", "Profile", () => true],
  ["dump", "Dump", () => true],
];

function makeCard(id) {
  const card = el("article", "worker");
  card.dataset.id = id;
  const head = el("div", "w-head");
  const f = { card };
  f.id = head.appendChild(el("span", "w-id", "#" + id));
  f.pid = head.appendChild(el("span", "w-pid"));
  f.tag = head.appendChild(el("span", "w-tag", "foreign"));
  f.state = head.appendChild(el("span", "w-state"));
  card.appendChild(head);
  const rate = el("div", "w-rate");
  f.rps = rate.appendChild(el("span", "w-rps"));
  f.spark = rate.appendChild(makeSpark());
  card.appendChild(rate);
  const stats = el("div", "w-stats");
  for (const [key, label] of STATS) {
    const d = el("div");
    d.appendChild(el("span", "k", label));
    f[key] = d.appendChild(el("span", "v"));
    f[key].dataset.field = key;
    stats.appendChild(d);
  }
  card.appendChild(stats);
  for (const [key, label] of [["status", "status"], ["exit", "last exit"]]) {
    const line = el("div", "w-line");
    line.appendChild(document.createTextNode(label + ": "));
    f[key] = line.appendChild(el("span", "v"));
    f[key].dataset.field = key;
    f[key + "Line"] = line;
    card.appendChild(line);
  }
  const actions = el("div", "w-actions");
  f.actions = {};
  for (const [name, label] of WORKER_ACTIONS) {
    const b = actions.appendChild(el("button", "small", label));
    b.dataset.workerAction = name;
    b.dataset.worker = id;
    f.actions[name] = b;
  }
  card.appendChild(actions);
  card._f = f;
  return card;
}

function updateCard(card, w, snap) {
  const f = card._f;
  const slot = snap.status.slots.find((s) => s.worker === w.id || s.successor === w.id);
  const state = stateOf(w, slot);
  card.dataset.pid = w.pid;
  card.dataset.state = w.state;
  card.dataset.leaving = String(!!w.leaving);
  card.dataset.drained = String(!!w.drained);
  set(f.pid, "pid " + w.pid);
  f.tag.hidden = !w.foreign;
  set(f.state, state);
  const rps = fmt.rate(w.requests_per_sec);
  f.rps.textContent = rps === null ? "–" : rps;
  f.rps.appendChild(el("small", "", "req/s"));
  sparkline(f.spark, (snap.history && snap.history[w.id]) || []);
  set(f.uptime, fmt.secs(w.uptime_secs));
  set(f.rss, fmt.bytes(w.rss_bytes));
  set(f.cpu, fmt.pct(snap.cpu_percent ? snap.cpu_percent[w.id] : null));
  f.cpu.title = w.cpu_secs === null || w.cpu_secs === undefined ? "" : w.cpu_secs.toFixed(2) + " CPU seconds in all";
  set(f.p99, fmt.ms(w.latency_p99_ms));
  set(f.conns, w.connections);
  set(f.restarts, w.restarts);
  set(f.status, w.status);
  f.statusLine.hidden = !w.status;
  set(f.exit, fmt.exit(w.last_exit));
  f.exitLine.hidden = !w.last_exit;
  for (const [name, , shown] of WORKER_ACTIONS) f.actions[name].hidden = !shown(w);
}

function renderWorkers(snap) {
  const box = $("workers");
  const seen = new Set();
  const cards = new Map([...box.children].map((c) => [Number(c.dataset.id), c]));
  const workers = [...snap.status.workers].sort((a, b) => (a.slot ?? 1e9) - (b.slot ?? 1e9) || a.id - b.id);
  let prev = null;
  for (const w of workers) {
    seen.add(w.id);
    let card = cards.get(w.id);
    if (!card) card = makeCard(w.id);
    updateCard(card, w, snap);
    const want = prev ? prev.nextSibling : box.firstChild;
    if (want !== card) box.insertBefore(card, want);
    prev = card;
  }
  for (const [id, c] of cards) if (!seen.has(id)) c.remove();
  $("no-workers").hidden = workers.length > 0;
}

function renderHeader(snap) {
  const s = snap.status;
  set($("host"), `pid ${s.pid} · herd ${s.herd_version} · up ${fmt.secs(s.uptime_secs)}`);
  const h = $("health");
  h.dataset.health = s.health;
  set(h, s.health);
  $("marked").hidden = !s.marked_down;
  $("stopping").hidden = !s.stopping;
  set($("policy"), s.policy);
  set($("count"), `${s.ready} / ${s.wanted} ready`);
  set($("wanted"), s.wanted);
  const total = s.workers.reduce((a, w) => a + (w.requests_per_sec || 0), 0);
  set($("total-rps"), fmt.rate(total));
  const rep = Object.entries(s.replacements || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  set($("replacements"), rep || "none");
  set($("reloads"), s.reloads.finished + (s.reloads.aborted ? ` (+${s.reloads.aborted} aborted)` : ""));
  const box = $("listeners");
  box.replaceChildren(...s.listeners.map((l) => {
    const d = el("div", "listener", l.address);
    const queue = l.waiting + l.queued;
    d.appendChild(el("span", "q" + (queue > 0 ? " busy" : ""), `${l.workers} workers · queue ${queue}`));
    d.title = `waiting in the primary ${l.waiting}, in workers' queues ${l.queued}, handed off ${l.handed_off}`;
    return d;
  }));
}

function renderReload(snap) {
  const s = snap.status;
  const r = s.reload;
  const leaving = s.workers.filter((w) => w.leaving);
  const box = $("reload");
  box.hidden = !r;
  if (!r) return;
  set($("reload-text"), `${r.replaced} of ${r.total} replaced · ${r.running_secs.toFixed(1)}s`);
  $("reload-bar").style.width = `${r.total ? (100 * r.replaced) / r.total : 0}%`;
  const items = [];
  for (const slot of s.slots) {
    if (slot.successor === null || slot.successor === undefined) continue;
    const li = el("li");
    li.appendChild(document.createTextNode(`slot ${slot.slot}: worker ${slot.worker ?? "–"} `));
    li.appendChild(el("span", "draining", "serving until its successor is ready"));
    li.appendChild(document.createTextNode(" → "));
    li.appendChild(el("span", "warming", `worker ${slot.successor} warming`));
    items.push(li);
  }
  for (const w of leaving) items.push(el("li", "draining", `worker ${w.id} draining (leaving)`));
  $("reload-slots").replaceChildren(...items);
}

function renderEvents(snap) {
  const list = $("events");
  const key = snap.events.length ? snap.events[0].at_ms + ":" + snap.events.length + snap.events[0].text : "";
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...snap.events.map((e) => {
    const li = el("li");
    li.dataset.kind = e.kind;
    li.appendChild(el("time", "", fmt.clock(e.at_ms)));
    const t = el("span");
    t.appendChild(el("span", "kind", e.kind.replace("_", " ")));
    t.appendChild(document.createTextNode(e.text));
    li.appendChild(t);
    return li;
  }));
}

window.HerdRender = {
  all(snap) {
    renderHeader(snap);
    renderReload(snap);
    renderWorkers(snap);
    renderEvents(snap);
    // The Services section (services.js).
    window.HerdServices.render(snap);
  },
  el, set, fmt, makeSpark, sparkline,
};
