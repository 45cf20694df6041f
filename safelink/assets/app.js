// SafeLink dashboard: vanilla JS over the sensor's JSON API, polled every few seconds.
// The token (asked once) lives in sessionStorage and goes out as `Authorization: Bearer`.
// Routes that answer 404 (e.g. the learning API on a sensor without it) degrade to "—".
"use strict";

const POLL_MS = 3000;
const PAGE_SIZE = 25;
const TOKEN_KEY = "safelink.token";
// Alert kinds, in the sensor's order: filled from GET /kinds (the sensor's one list) at start.
let KINDS = [];
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#c53030", "#319795",
  "#975a16", "#4a5568", "#d69e2e", "#e53e3e"];
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (sel) => document.querySelector(sel);
const state = {
  cursors: [null], // cursor of each page visited; the last one is the page shown
  filter: {},
  pendingAction: null, // retried once a token is entered
  busy: false,
  rollbackPick: null, // model version chosen in the rollback control
  refreshes: 0,
};

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// ------------------------------------------------------------------ HTTP

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function call(method, path, body) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new HttpError(resp.status, msg);
  }
  return resp;
}

const getJson = async (path) => (await call("GET", path)).json();

// GET that answers null on 404 (optional routes).
async function getOptional(path) {
  try { return await getJson(path); } catch (e) {
    if (e instanceof HttpError && e.status === 404) return null;
    throw e;
  }
}

function say(text, kind) {
  const m = $("#msg");
  m.textContent = text;
  m.className = kind || "";
}

// Runs a state-changing call; asks for the token first if there is none, or again on 401.
async function act(label, method, path, body) {
  if (!token()) {
    askToken(() => act(label, method, path, body));
    return null;
  }
  try {
    const resp = await call(method, path, body);
    const data = resp.status === 204 ? {} : await resp.json().catch(() => ({}));
    say(label + ": " + (data.message || "done"), "ok");
    refresh();
    return data;
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      say(label + ": " + e.message, "error");
      askToken(() => act(label, method, path, body));
    } else {
      say(label + ": " + e.message, "error");
    }
    return null;
  }
}

function askToken(then) {
  state.pendingAction = then || null;
  $("#token-form").hidden = false;
  $("#token-input").value = "";
  $("#token-input").focus();
}

// ------------------------------------------------------------------ formatting

function relativeTime(iso, now) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "—";
  const s = Math.round(((now || Date.now()) - t) / 1000);
  if (s < 0) return "just now";
  if (s < 10) return "just now";
  const unit = (n, u) => n + " " + u + (n === 1 ? "" : "s") + " ago";
  if (s < 60) return unit(s, "second");
  if (s < 3600) return unit(Math.floor(s / 60), "minute");
  if (s < 86400) return unit(Math.floor(s / 3600), "hour");
  if (s < 86400 * 60) return unit(Math.floor(s / 86400), "day");
  if (s < 86400 * 730) return unit(Math.floor(s / (86400 * 30)), "month");
  return unit(Math.floor(s / (86400 * 365)), "year");
}

function setCard(id, value, dataState, title) {
  const card = document.getElementById(id);
  const v = card.querySelector(".value");
  v.textContent = value;
  v.title = title || "";
  if (dataState === undefined) delete card.dataset.state; else card.dataset.state = dataState;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function query(extra) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(Object.assign({}, state.filter, extra || {}))) {
    if (v !== undefined && v !== null && v !== "") p.set(k, v);
  }
  const s = p.toString();
  return s ? "?" + s : "";
}

// ------------------------------------------------------------------ cards

async function refreshStatus() {
  const s = await getJson("/status");
  setCard("card-total-alerts", s.total_alerts, undefined,
    s.active_alerts + " active, " + s.archived_alerts + " archived");
  setCard("card-latest-alert", s.latest_alert_time ? relativeTime(s.latest_alert_time) : "—",
    undefined, s.latest_alert_time || "");
  const src = (s.detection_sources || []).map((x) => x.toUpperCase()).sort();
  setCard("card-sources", src.length ? src.length + " (" + src.join(", ") + ")" : "0");
  setCard("card-sniffer", s.sniffer_running ? "Running" : "Stopped",
    s.sniffer_running ? "running" : "stopped",
    s.sniffer_running ? "XDP " + (s.xdp_mode || "") + ", " + s.packets + " packets" : "");
  $("#iface").textContent = (s.interface || "") + (s.xdp_mode ? " (" + s.xdp_mode + ")" : "");
}

async function refreshLearning() {
  const l = await getOptional("/learning/status");
  const buttons = ["#learning-start", "#learning-stop", "#learning-train"];
  // Without a learner the status says enabled: false, with no model versions.
  if (!l || l.model_versions === 0) {
    setCard("card-learning", "Inactive", "inactive",
      (l && l.reason) || "continuous learning is not available on this sensor");
    setCard("card-cycles", "—");
    setCard("card-ann-phase", "—");
    buttons.forEach((b) => { $(b).disabled = true; });
    return;
  }
  // The ANN's phase: "baseline" (scores, learns this host, no ANN alert) or "live".
  const fpr = l.local_fpr == null ? "" : "local FPR " + (100 * l.local_fpr).toFixed(2) + " % of " +
    l.local_heldout_flows + " held-out flows";
  setCard("card-ann-phase", l.phase === "live" ? "Live" : "Baseline", l.phase,
    [l.baseline_flows_seen + " flows seen in baseline", fpr,
      l.baseline_ends && "first check " + l.baseline_ends, l.baseline_reason]
      .filter(Boolean).join("; "));
  // GET /learning/status: state is "active" | "training" | "inactive".
  const st = l.state;
  buttons.forEach((b) => { $(b).disabled = false; });
  $("#learning-train").disabled = st === "training"; // 409 while a cycle runs
  const label = { active: "Active", training: "Training…", inactive: "Inactive" }[st] || st;
  const why = [l.enabled ? "" : "disabled in the configuration", l.reason,
    l.next_due && "next due " + l.next_due,
    l.new_samples + " new / " + l.total_samples + " samples (min " + l.min_samples + ")"]
    .filter(Boolean).join("; ");
  setCard("card-learning", label, st, why);
  setCard("card-cycles", String(l.total_training_cycles), undefined,
    [l.last_outcome && "last: " + l.last_outcome,
      l.last_training_time && relativeTime(l.last_training_time)].filter(Boolean).join(", "));
}

async function refreshFleet() {
  // GET /fleet/status: 404 when the sensor is not in a fleet.
  const f = await getOptional("/fleet/status");
  if (!f) {
    setCard("card-fleet", "Off", "inactive", "not in a fleet (safelink run --fleet nats://HOST:PORT)");
    return;
  }
  const m = f.model ? "v" + f.model.version + " " + f.model.sha256.slice(0, 12) + " (" + f.model.origin + ")" : "local model";
  const refused = Object.values(f.refused || {}).reduce((a, b) => a + b, 0);
  const why = [f.sensor_id + " on " + f.channel, m,
    f.published + " published, " + f.buffered + " buffered, " + f.dropped + " dropped",
    refused ? refused + " refused; last: " + (f.last_refusal ? f.last_refusal.reason : "") : ""]
    .filter(Boolean).join("; ");
  setCard("card-fleet", f.connected ? "Connected" : "Disconnected",
    f.connected ? "running" : "stopped", why);
}

async function refreshModels() {
  const m = await getOptional("/models");
  const select = $("#rollback-version");
  if (m) {
    // GET /models: versions newest first, each with `active`; current_version is a number.
    const versions = m.versions || [];
    const cur = versions.find((v) => v.active);
    setCard("card-model-version", m.current_version != null ? String(m.current_version) : "—", undefined,
      cur ? cur.origin + ", " + cur.created + ", sha256 " + cur.sha256.slice(0, 12) : "");
    const label = (v) => "v" + v.version + " " + v.origin + (v.active ? " (active)" : "");
    const want = versions.map((v) => v.version + "=" + label(v));
    const have = Array.from(select.options).map((o) => o.value + "=" + o.textContent);
    if (want.join() !== have.join()) {
      select.replaceChildren(...versions.map((v) => {
        const o = el("option", label(v));
        o.value = String(v.version);
        return o;
      }));
      // The version the operator picked, else the active one.
      const picked = versions.some((v) => String(v.version) === state.rollbackPick);
      if (picked) select.value = state.rollbackPick; else if (cur) select.value = String(cur.version);
    }
    select.disabled = $("#rollback-btn").disabled = versions.length === 0;
    return;
  }
  select.disabled = $("#rollback-btn").disabled = true;
  const single = await getOptional("/model");
  setCard("card-model-version", single ? single.model.model_version || "—" : "—", undefined,
    single ? single.model.source : "no ANN model on this sensor");
}

// ------------------------------------------------------------------ alerts table

async function refreshAlerts() {
  const cursor = state.cursors[state.cursors.length - 1];
  const page = await getJson("/alerts" + query({ limit: PAGE_SIZE, cursor }));
  const tbody = $("#alerts-table tbody");
  const checked = new Set(Array.from(tbody.querySelectorAll("input:checked")).map((c) => c.value));
  const rows = page.alerts.map((a) => {
    const tr = el("tr", undefined, "alert-row");
    tr.dataset.id = a.id;
    const box = el("input");
    box.type = "checkbox";
    box.value = a.id;
    box.checked = checked.has(String(a.id));
    box.addEventListener("click", (e) => e.stopPropagation());
    const td0 = el("td");
    td0.append(box);
    const time = el("td", relativeTime(a.timestamp));
    time.title = a.timestamp;
    const dest = a.dest_ip ? a.dest_ip + (a.dest_port != null ? ":" + a.dest_port : "") : "";
    tr.append(td0, el("td", a.id), time, el("td", a.kind, "kind"), el("td", a.source.toUpperCase(), "source"),
      el("td", a.severity, "sev-" + a.severity), el("td", a.src_ip || a.src_mac || ""), el("td", dest),
      el("td", a.count), el("td", a.description));
    tr.addEventListener("click", () => showDetail(a.id));
    return tr;
  });
  if (rows.length === 0) {
    const tr = el("tr", undefined, "empty");
    const td = el("td", "No alerts match.");
    td.colSpan = 10;
    tr.append(td);
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  state.nextCursor = page.next_cursor;
  $("#next").disabled = !page.next_cursor;
  $("#prev").disabled = state.cursors.length <= 1;
  $("#page-info").textContent = "page " + state.cursors.length + " · " + page.alerts.length + " shown";
}

async function showDetail(id) {
  try {
    const a = await getJson("/alerts/" + id);
    $("#detail").hidden = false;
    $("#detail-id").textContent = "#" + a.id;
    $("#detail").dataset.id = a.id;
    const dl = $("#detail-fields");
    dl.replaceChildren();
    for (const k of ["timestamp", "kind", "source", "severity", "confidence", "src_ip", "src_port",
      "src_mac", "dest_ip", "dest_port", "proto", "first_seen", "last_seen", "count", "description",
      "community_id"]) {
      if (a[k] === null || a[k] === undefined) continue;
      dl.append(el("dt", k), el("dd", a[k]));
    }
    const ex = $("#detail-explanation");
    const top = a.explanation && Array.isArray(a.explanation.top) ? a.explanation.top : null;
    ex.hidden = !a.explanation;
    const tb = ex.querySelector("tbody");
    if (top) {
      tb.replaceChildren(...top.map((c) => {
        const tr = el("tr");
        tr.append(el("td", c.feature + (c.unit ? " (" + c.unit + ")" : "")),
          el("td", Number(c.contribution).toFixed(4)));
        return tr;
      }));
    } else if (a.explanation) {
      tb.replaceChildren(...Object.entries(a.explanation).map(([k, v]) => {
        const tr = el("tr");
        tr.append(el("td", k), el("td", typeof v === "object" ? JSON.stringify(v) : v));
        return tr;
      }));
    }
    $("#detail").scrollIntoView({ block: "nearest" });
  } catch (e) {
    say("alert " + id + ": " + e.message, "error");
  }
}

function readFilters() {
  const iso = (v) => (v ? new Date(v).toISOString().replace(/\.\d{3}Z$/, "Z") : "");
  state.filter = {
    kind: $("#f-kind").value,
    source: $("#f-source").value,
    src_ip: $("#f-ip").value.trim(),
    since: iso($("#f-since").value),
    until: iso($("#f-until").value),
  };
  state.cursors = [null];
}

async function download(ext) {
  try {
    const resp = await call("GET", "/alerts/export." + ext + query());
    const blob = await resp.blob();
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = "safelink-alerts." + (ext === "json" ? "jsonl" : ext);
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  } catch (e) {
    if (e.status === 401) askToken(() => download(ext));
    say("export: " + e.message, "error");
  }
}

// ------------------------------------------------------------------ charts

async function refreshAlertChart() {
  const page = await getJson("/alerts" + query({ limit: 1000, cursor: undefined }));
  const box = $("#chart-alerts");
  const alerts = page.alerts.filter((a) => !Number.isNaN(Date.parse(a.timestamp)));
  if (alerts.length === 0) {
    box.replaceChildren(el("div", "No alerts yet.", "empty"));
    return;
  }
  const times = alerts.map((a) => Date.parse(a.timestamp));
  const lo = Math.min(...times);
  const hi = Math.max(...times, lo + 60000);
  const n = 24;
  const width = (hi - lo) / n;
  const kinds = Array.from(new Set(alerts.map((a) => a.kind))).sort();
  const buckets = Array.from({ length: n }, () => Object.fromEntries(kinds.map((k) => [k, 0])));
  alerts.forEach((a, i) => { buckets[Math.min(n - 1, Math.floor((times[i] - lo) / width))][a.kind] += 1; });
  const max = Math.max(1, ...buckets.map((b) => Object.values(b).reduce((x, y) => x + y, 0)));
  const W = 600, H = 170, L = 30, B = 20;
  const s = svg("svg", { viewBox: "0 0 " + W + " " + (H + B), role: "img", "aria-label": "alerts over time" });
  s.append(svg("line", { x1: L, y1: H, x2: W, y2: H, stroke: "#999" }));
  s.append(svg("text", { x: 2, y: 12, "font-size": 11 }, String(max)));
  s.append(svg("text", { x: 2, y: H, "font-size": 11 }, "0"));
  const bw = (W - L) / n;
  buckets.forEach((b, i) => {
    let y = H;
    kinds.forEach((k, ki) => {
      if (!b[k]) return;
      const h = (b[k] / max) * (H - 10);
      y -= h;
      const r = svg("rect", { x: L + i * bw + 1, y, width: bw - 2, height: h,
        fill: COLORS[KINDS.indexOf(k) % COLORS.length] || "#888" });
      r.append(svg("title", {}, k + ": " + b[k] + " from " + new Date(lo + i * width).toISOString()));
      s.append(r);
    });
  });
  s.append(svg("text", { x: L, y: H + 15, "font-size": 11 }, new Date(lo).toLocaleString()));
  s.append(svg("text", { x: W, y: H + 15, "font-size": 11, "text-anchor": "end" }, new Date(hi).toLocaleString()));
  const legend = el("div", undefined, "legend");
  kinds.forEach((k) => {
    const item = el("span");
    const sw = el("i");
    sw.style.background = COLORS[KINDS.indexOf(k) % COLORS.length] || "#888";
    item.append(sw, k + " (" + alerts.filter((a) => a.kind === k).length + ")");
    legend.append(item);
  });
  box.replaceChildren(s, legend);
}

// One point per cycle that has validation metrics (deployed ones are labelled with the version
// they produced; rejected candidates are hollow points labelled with the cycle), oldest first.
async function refreshLearningChart() {
  const h = await getOptional("/learning/history?limit=50");
  const box = $("#chart-learning");
  const cycles = h ? h.history.filter((c) => c.metrics).sort((a, b) => a.id - b.id) : [];
  if (cycles.length === 0) {
    box.replaceChildren(el("div", h ? "No training cycle with metrics yet." : "Continuous learning is not available on this sensor.", "empty"));
    return;
  }
  const W = 600, H = 170, L = 34, R = 44, B = 20;
  // Accuracy on 0–100 %, loss on 0–1 (or up to its next integer when a loss exceeds 1).
  const maxLoss = Math.max(1, Math.ceil(Math.max(...cycles.map((c) => c.metrics.loss))));
  const x = (i) => L + (cycles.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (cycles.length - 1));
  const name = (c) => (c.version != null ? "v" + c.version : "#" + c.id + " " + c.outcome);
  const s = svg("svg", { viewBox: "0 0 " + W + " " + (H + B), role: "img", "aria-label": "learning history" });
  s.append(svg("line", { x1: L, y1: H, x2: W - R, y2: H, stroke: "#999" }));
  s.append(svg("text", { x: 2, y: 14, "font-size": 11, fill: "#2f855a" }, "100%"));
  s.append(svg("text", { x: W - R + 4, y: 14, "font-size": 11, fill: "#c05621" }, "loss " + maxLoss));
  s.append(svg("text", { x: 2, y: H, "font-size": 11 }, "0"));
  const series = [["acc", "accuracy", "#2f855a", (m) => m.accuracy], ["loss", "loss", "#c05621", (m) => m.loss / maxLoss]];
  for (const [cls, label, color, f] of series) {
    const y = (c) => H - f(c.metrics) * (H - 10);
    if (cycles.length > 1) {
      s.append(svg("polyline", { points: cycles.map((c, i) => x(i) + "," + y(c)).join(" "),
        fill: "none", stroke: color, "stroke-width": 2 }));
    }
    cycles.forEach((c, i) => {
      const kept = c.outcome === "deployed";
      const dot = svg("circle", { class: cls, cx: x(i), cy: y(c), r: 4, fill: kept ? color : "#fff",
        stroke: color, "stroke-width": 2, "data-cycle": c.id });
      dot.append(svg("title", {}, name(c) + " " + label + " " + c.metrics[label].toFixed(4) + " (cycle " + c.id + ", " + c.outcome + ")"));
      s.append(dot);
    });
  }
  cycles.forEach((c, i) => s.append(svg("text", { x: x(i), y: H + 15, "font-size": 11, "text-anchor": "middle" }, name(c))));
  const legend = el("div", undefined, "legend");
  series.forEach(([, n, c]) => {
    const item = el("span"); const sw = el("i"); sw.style.background = c; item.append(sw, n); legend.append(item);
  });
  box.replaceChildren(s, legend);
}

// ------------------------------------------------------------------ polling

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  const parts = [refreshStatus, refreshLearning, refreshFleet, refreshModels, refreshAlerts, refreshAlertChart, refreshLearningChart];
  const results = await Promise.allSettled(parts.map((f) => f()));
  state.busy = false;
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length) {
    const e = failed[0].reason;
    $("#conn").textContent = "⚠ " + (e && e.message ? e.message : "API unreachable");
    if (e && e.status === 401 && !token()) askToken(null);
  } else {
    $("#conn").textContent = "updated " + new Date().toLocaleTimeString();
  }
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
}

async function loadKinds() {
  try {
    KINDS = (await getJson("/kinds")).kinds.map((k) => k.kind);
  } catch (e) {
    say("cannot read the alert kinds: " + e.message, "err");
  }
  const kindSel = $("#f-kind");
  KINDS.forEach((k) => { const o = el("option", k); o.value = k; kindSel.append(o); });
}

function init() {
  const kindsLoaded = loadKinds();

  $("#token-btn").addEventListener("click", () => askToken(null));
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("#token-input").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("#token-form").hidden = true;
    say("token saved for this session", "ok");
    const then = state.pendingAction;
    state.pendingAction = null;
    if (then) then(); else refresh();
  });
  $("#token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token-form").hidden = true;
    say("token forgotten");
  });
  $("#token-cancel").addEventListener("click", () => { $("#token-form").hidden = true; state.pendingAction = null; });

  $("#sniffer-start").addEventListener("click", () => act("sniffer start", "POST", "/sniffer/start"));
  $("#sniffer-stop").addEventListener("click", () => act("sniffer stop", "POST", "/sniffer/stop"));
  $("#learning-start").addEventListener("click", () => act("learning start", "POST", "/learning/start"));
  $("#learning-stop").addEventListener("click", () => act("learning stop", "POST", "/learning/stop"));
  $("#learning-train").addEventListener("click", () => act("train now", "POST", "/learning/train-now"));
  $("#rollback-version").addEventListener("change", (e) => { state.rollbackPick = e.target.value; });
  $("#rollback-btn").addEventListener("click", async () => {
    const v = $("#rollback-version").value;
    if (v && await act("activate model v" + v, "POST", "/models/" + encodeURIComponent(v) + "/activate")) {
      state.rollbackPick = null; // follow the active version again
    }
  });

  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); readFilters(); refresh(); });
  $("#f-clear").addEventListener("click", () => {
    ["#f-kind", "#f-source", "#f-ip", "#f-since", "#f-until"].forEach((s) => { $(s).value = ""; });
    readFilters();
    refresh();
  });
  $("#next").addEventListener("click", () => {
    if (state.nextCursor) { state.cursors.push(state.nextCursor); refresh(); }
  });
  $("#prev").addEventListener("click", () => {
    if (state.cursors.length > 1) { state.cursors.pop(); refresh(); }
  });
  $("#select-all").addEventListener("change", (e) => {
    document.querySelectorAll("#alerts-table tbody input[type=checkbox]").forEach((c) => { c.checked = e.target.checked; });
  });
  $("#archive-btn").addEventListener("click", () => {
    const ids = Array.from(document.querySelectorAll("#alerts-table tbody input:checked")).map((c) => Number(c.value));
    if (ids.length === 0) { say("select alerts to archive first"); return; }
    act("archive " + ids.length + " alert(s)", "POST", "/alerts/archive", { ids });
  });
  $("#detail-archive").addEventListener("click", async () => {
    const id = Number($("#detail").dataset.id);
    if (await act("archive alert " + id, "POST", "/alerts/archive", { ids: [id] })) $("#detail").hidden = true;
  });
  for (const [btn, verdict] of [["#detail-fp", "false_positive"], ["#detail-confirm", "confirmed"]]) {
    $(btn).addEventListener("click", () => {
      const id = Number($("#detail").dataset.id);
      act("verdict " + verdict + " on alert " + id, "POST", "/alerts/" + id + "/verdict", { verdict });
    });
  }
  $("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; });
  $("#dl-csv").addEventListener("click", () => download("csv"));
  $("#dl-json").addEventListener("click", () => download("json"));

  kindsLoaded.then(refresh);
  setInterval(refresh, POLL_MS);
}

init();
