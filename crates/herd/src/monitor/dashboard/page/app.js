// herd's dashboard: the live stream, the token and the actions. Every
// action is one of the monitor's control routes, called with the token the
// operator typed (kept in this tab's sessionStorage, sent as a Bearer
// header); the page never talks to any host but the monitor.
"use strict";

(function () {
  const R = window.HerdRender;
  const $ = (id) => document.getElementById(id);
  const KEY = "herd-monitor-token";
  let snap = null;

  // ---- the stream -------------------------------------------------------
  function connect() {
    const es = new EventSource("/debug/events");
    es.addEventListener("snapshot", (ev) => {
      try {
        snap = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      $("live").dataset.live = "yes";
      $("live").textContent = "live";
      R.all(snap);
      document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
    });
    es.onerror = () => {
      $("live").dataset.live = "no";
      $("live").textContent = "reconnecting…";
    };
  }

  // ---- the token --------------------------------------------------------
  function token() { return sessionStorage.getItem(KEY) || ""; }

  function showToken() {
    const has = token() !== "";
    $("token-state").textContent = has ? "token set for this tab" : "no token: actions will be refused";
    $("token-forget").hidden = !has;
    $("token").value = "";
    $("token").placeholder = has ? "••••••••" : "monitor token";
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (t) sessionStorage.setItem(KEY, t);
    showToken();
    notice("info", t ? "token kept for this tab: actions send it" : "type the token from --monitor-token-file");
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showToken();
    notice("info", "token forgotten");
  });

  // ---- what the monitor said ---------------------------------------------
  let noticeTimer = null;
  function notice(kind, text) {
    const n = $("notice");
    n.hidden = false;
    n.dataset.kind = kind;
    n.textContent = text;
    clearTimeout(noticeTimer);
    if (kind === "ok" || kind === "info") noticeTimer = setTimeout(() => { n.hidden = true; }, 15000);
  }

  // A refusal in words: what was wrong and what to do.
  function refusal(status, body, what) {
    const said = body.trim();
    if (status === 401) {
      if (!token()) return ["refused", `refused: ${what} needs the monitor's token; type it in the token box`];
      if (/wrong/.test(said)) return ["refused", "refused: the token is wrong"];
      return ["refused", `refused: ${said}`];
    }
    if (status === 404 && /control routes are off/.test(said)) {
      return ["off", "actions are off: start herd with --monitor-token-file"];
    }
    if (status === 404) return ["error", `${what}: ${said || "not found"}`];
    if (status === 501) return ["off", `${what} is not available: ${said}`];
    if (status === 409) return ["error", `${what} refused: ${said}`];
    if (status === 503) return ["error", `${what}: ${said || "unavailable"}`];
    return ["error", `${what} failed (${status}): ${said}`];
  }

  // Calls a control route; resolves to the response (or null when the
  // monitor could not be reached), having said on the page how it went.
  async function call(method, path, what, opts = {}) {
    const headers = {};
    if (token()) headers.Authorization = "Bearer " + token();
    let res;
    try {
      res = await fetch(path, { method, headers, cache: "no-store" });
    } catch (e) {
      notice("error", `${what}: the monitor does not answer (${e.message})`);
      return null;
    }
    if (res.ok) {
      if (!opts.quiet) notice("ok", (await res.clone().text()).trim() || `${what}: done`);
      return res;
    }
    const [kind, text] = refusal(res.status, await res.text(), what);
    notice(kind, text);
    return null;
  }

  // ---- cluster actions ----------------------------------------------------
  const ecv = () => (snap && snap.ecv_root) || "/ecv";
  const wanted = () => (snap ? snap.status.wanted : 1);
  const ACTIONS = {
    "reload": () => {
      notice("info", "reload: replacing every worker, one slot at a time…");
      return call("POST", "/reload", "reload");
    },
    "scale-up": () => call("POST", `/scale?workers=${wanted() + 1}`, "scale up"),
    "scale-down": () => {
      if (wanted() <= 1) return notice("error", "scale down: one worker is the least");
      return call("POST", `/scale?workers=${wanted() - 1}`, "scale down");
    },
    "mark-down": () => call("POST", `${ecv()}/markDown`, "mark down"),
    "mark-up": () => call("POST", `${ecv()}/markUp`, "mark up"),
  };

  document.querySelectorAll("[data-action]").forEach((b) => {
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await ACTIONS[b.dataset.action](); } finally { b.disabled = false; }
    });
  });

  // ---- per-worker actions -------------------------------------------------
  function panel(title, node, openUrl) {
    $("panel-title").textContent = title;
    $("panel-body").replaceChildren(node);
    const a = $("panel-open");
    a.hidden = !openUrl;
    if (openUrl) a.href = openUrl;
    $("panel").hidden = false;
  }
  let blobUrl = null;
  $("panel-close").addEventListener("click", () => {
    $("panel").hidden = true;
    $("panel-body").replaceChildren();
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = null;
  });

  // How long the profile button records: 10 s, or ?profile_seconds=N
  // (1 to 60) in the page's address.
  const PROFILE_SECONDS = Math.min(60, Math.max(1,
    Number(new URLSearchParams(location.search).get("profile_seconds")) || 10));
  const WORKER = {
    drain: (id) => call("POST", `/workers/${id}/drain`, `drain worker ${id}`),
    undrain: (id) => call("POST", `/workers/${id}/undrain`, `undrain worker ${id}`),
    replace: (id) => call("POST", `/workers/${id}/replace`, `replace worker ${id}`),
    profile: async (id) => {
      notice("info", `profiling worker ${id} for ${PROFILE_SECONDS}s…`);
      const res = await call("GET", `/workers/${id}/profile?seconds=${PROFILE_SECONDS}`, `profile of worker ${id}`, { quiet: true });
      if (!res) return;
      const blob = await res.blob();
      if (blobUrl) URL.revokeObjectURL(blobUrl);
      blobUrl = URL.createObjectURL(new Blob([blob], { type: "image/svg+xml" }));
      const img = R.el("img");
      img.alt = `flamegraph of worker ${id}`;
      img.src = blobUrl;
      panel(`flamegraph of worker ${id} (${PROFILE_SECONDS}s)`, img, blobUrl);
      notice("ok", `profile of worker ${id} recorded`);
    },
    dump: async (id) => {
      const res = await call("GET", `/workers/${id}/dump`, `dump of worker ${id}`, { quiet: true });
      if (!res) return;
      panel(`backtraces of worker ${id}`, R.el("pre", "", await res.text()));
      notice("ok", `dump of worker ${id} taken`);
    },
  };

  $("workers").addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-worker-action]");
    if (!b) return;
    const act = WORKER[b.dataset.workerAction];
    if (!act) return;
    b.disabled = true;
    try { await act(b.dataset.worker); } finally { b.disabled = false; }
  });

  showToken();
  connect();
})();
