// herd's dashboard, the Services section: a card per named cache (its
// counters from the snapshot, its hits/s per tick from the monitor's
// memory), the cache's Redis link when it runs on Redis, and the status
// registry's names. A status's values are read from /statuses/NAME only
// when the operator opens it (reading one asks every worker that holds
// it), and again on Refresh, never every tick.
"use strict";

(function () {
  const R = window.HerdRender;
  const $ = (id) => document.getElementById(id);

  // ---- caches --------------------------------------------------------------
  // [field, label, shown value]
  const COUNTERS = [
    ["entries", "entries", (s) => s.entries],
    ["bytes", "bytes", (s) => R.fmt.bytes(s.bytes)],
    ["hits", "hits", (s) => s.hits],
    ["misses", "misses", (s) => s.misses],
    ["loads", "loads", (s) => s.loads],
    ["load_failures", "load failures", (s) => s.load_failures],
    ["evictions", "evictions", (s) => s.evictions],
    ["lease_timeouts", "lease timeouts", (s) => s.lease_timeouts],
    ["expirations", "expirations", (s) => s.expirations],
  ];

  function ratio(s) {
    const gets = s.hits + s.misses;
    return gets ? (100 * s.hits) / gets : null;
  }

  function makeCache(name) {
    const card = R.el("article", "svc-card cache");
    card.dataset.cache = name;
    const f = {};
    const head = card.appendChild(R.el("div", "svc-head"));
    head.appendChild(R.el("span", "svc-name", name));
    f.where = head.appendChild(R.el("span", "svc-tag"));
    const rate = card.appendChild(R.el("div", "w-rate"));
    f.ratio = rate.appendChild(R.el("span", "w-rps"));
    f.ratio.dataset.field = "hit_ratio";
    f.spark = rate.appendChild(R.makeSpark());
    f.rate = rate.appendChild(R.el("span", "svc-rate"));
    f.rate.dataset.field = "hits_per_sec";
    const stats = card.appendChild(R.el("div", "svc-stats"));
    for (const [key, label] of COUNTERS) {
      const d = stats.appendChild(R.el("div"));
      d.appendChild(R.el("span", "k", label));
      f[key] = d.appendChild(R.el("span", "v"));
      f[key].dataset.field = key;
    }
    card._f = f;
    return card;
  }

  function renderCaches(snap) {
    const s = snap.status;
    const caches = s.caches || {};
    const box = $("caches");
    const cards = new Map([...box.children].map((c) => [c.dataset.cache, c]));
    const names = Object.keys(caches).sort();
    let prev = null;
    for (const name of names) {
      const st = caches[name];
      let card = cards.get(name);
      if (!card) card = makeCache(name);
      const f = card._f;
      R.set(f.where, s.redis ? "on Redis" : "in the primary");
      const r = ratio(st);
      f.ratio.textContent = r === null ? "–" : r.toFixed(r < 10 ? 1 : 0) + "%";
      f.ratio.appendChild(R.el("small", "", "hit ratio"));
      const history = (snap.cache_history && snap.cache_history[name]) || [];
      R.sparkline(f.spark, history);
      const now = history.length ? history[history.length - 1] : null;
      R.set(f.rate, now === null ? "– hits/s" : R.fmt.rate(now) + " hits/s");
      for (const [key, , shown] of COUNTERS) R.set(f[key], shown(st));
      f.lease_timeouts.classList.toggle("bad", st.lease_timeouts > 0);
      f.load_failures.classList.toggle("bad", st.load_failures > 0);
      const want = prev ? prev.nextSibling : box.firstChild;
      if (want !== card) box.insertBefore(card, want);
      prev = card;
    }
    for (const [name, c] of cards) if (!(name in caches)) c.remove();
    $("no-caches").hidden = names.length > 0;
  }

  function renderRedis(snap) {
    const h = snap.status.redis;
    $("redis").hidden = !h;
    if (!h) return;
    R.set($("redis-url"), h.url);
    const st = $("redis-state");
    st.dataset.up = String(!!h.up);
    R.set(st, h.up ? "up" : "away");
    R.set($("redis-away"), h.up ? "–" : R.fmt.secs(h.away_ms / 1000));
    R.set($("redis-reconnects"), h.reconnects);
    R.set($("redis-away-loads"), h.away_loads);
  }

  // ---- statuses --------------------------------------------------------------
  function holders(n) {
    const parts = [];
    if (n.workers.length) parts.push(`${n.workers.length} worker${n.workers.length === 1 ? "" : "s"}`);
    if (n.primary) parts.push("primary");
    return parts.join(" + ") || "nobody";
  }

  function makeStatus(name) {
    const li = R.el("li", "status");
    li.dataset.status = name;
    const f = {};
    const head = li.appendChild(R.el("div", "status-head"));
    f.toggle = head.appendChild(R.el("button", "status-toggle", name));
    f.toggle.type = "button";
    f.toggle.setAttribute("aria-expanded", "false");
    f.holders = head.appendChild(R.el("span", "status-holders"));
    f.refresh = head.appendChild(R.el("button", "small status-refresh", "Refresh"));
    f.refresh.type = "button";
    f.refresh.hidden = true;
    f.body = li.appendChild(R.el("div", "status-body"));
    f.body.hidden = true;
    li._f = f;
    f.toggle.addEventListener("click", () => {
      const open = f.body.hidden;
      f.body.hidden = !open;
      f.refresh.hidden = !open;
      li.dataset.open = String(open);
      f.toggle.setAttribute("aria-expanded", String(open));
      if (open) read(li, name);
    });
    f.refresh.addEventListener("click", () => read(li, name));
    return li;
  }

  function show(v) {
    const t = JSON.stringify(v);
    return t === undefined ? "–" : t;
  }

  function valueRow(who, value, cls) {
    const tr = R.el("tr", cls);
    tr.appendChild(R.el("th", "", who));
    tr.appendChild(R.el("td", "", value));
    return tr;
  }

  // Reads one status's values (what every holder answered within 1 s) into
  // its row.
  async function read(li, name) {
    const f = li._f;
    f.refresh.disabled = true;
    li.dataset.loaded = "no";
    f.body.replaceChildren(R.el("p", "status-note", "asking its workers…"));
    let res, body;
    try {
      res = await fetch(`/statuses/${encodeURIComponent(name)}?timeout_ms=1000`, { cache: "no-store" });
      body = await res.text();
    } catch (e) {
      f.body.replaceChildren(R.el("p", "status-note bad", `the monitor does not answer (${e.message})`));
      f.refresh.disabled = false;
      return;
    }
    f.refresh.disabled = false;
    if (!res.ok) {
      f.body.replaceChildren(R.el("p", "status-note bad", `${res.status}: ${body.trim()}`));
      return;
    }
    const r = JSON.parse(body);
    const table = R.el("table", "status-values");
    if (r.primary !== null && r.primary !== undefined) table.appendChild(valueRow("primary", show(r.primary), "primary"));
    for (const [id, v] of Object.entries(r.answers)) {
      const tr = table.appendChild(valueRow(`worker ${id}`, show(v), "answer"));
      tr.dataset.worker = id;
    }
    for (const [id, why] of Object.entries(r.failed || {})) table.appendChild(valueRow(`worker ${id}`, `failed: ${why}`, "failed"));
    for (const id of r.missing) table.appendChild(valueRow(`worker ${id}`, `no answer within ${r.timeout_ms} ms`, "missing"));
    const n = Object.keys(r.answers).length;
    const note = `read at ${R.fmt.clock(Date.now())} · ${n} answered` +
      (r.missing.length ? ` · ${r.missing.length} missing` : "") +
      (Object.keys(r.failed || {}).length ? ` · ${Object.keys(r.failed).length} failed` : "");
    f.body.replaceChildren(table, R.el("p", "status-note", note));
    li.dataset.loaded = "yes";
  }

  function renderStatuses(snap) {
    const names = snap.status.statuses || [];
    const box = $("statuses");
    const rows = new Map([...box.children].map((c) => [c.dataset.status, c]));
    let prev = null;
    for (const n of names) {
      let li = rows.get(n.name);
      if (!li) li = makeStatus(n.name);
      R.set(li._f.holders, holders(n) + (n.updatable.length ? ` · ${n.updatable.length} writable` : ""));
      const want = prev ? prev.nextSibling : box.firstChild;
      if (want !== li) box.insertBefore(li, want);
      prev = li;
    }
    const live = new Set(names.map((n) => n.name));
    for (const [name, li] of rows) if (!live.has(name)) li.remove();
    R.set($("statuses-count"), `${names.length} registered`);
  }

  window.HerdServices = {
    render(snap) {
      renderCaches(snap);
      renderRedis(snap);
      renderStatuses(snap);
    },
  };
})();
