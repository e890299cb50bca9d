"use strict";
/* The tfms up status page: polls the emulator's control API (/state, /metrics,
   /metrics/series, /history) and draws each service's revisions, traffic split, live request
   figures and the timeline of its canary rollouts. Uses chart.js (drawChart, legendOf). */

const API = "/_emulator";
const ROLLOUT_ANNOTATION = "tfms.dev/rollout"; // where tfms keeps a canary's state, rewritten at every step
const POLL_MS = 2000;
const RATE_WINDOW_S = 60; // req/s, error rate and percentiles are over the last minute
const SPARK_WINDOW_S = 300, SPARK_STEP_S = 5;
const MAX_ROLLOUT_POINTS = 120;
const LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";

let refreshes = 0;

async function getJSON(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : "";
  const response = await fetch(`${API}${path}${query}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

/* The same request, or null when the emulator has nothing for it (a revision never served). */
async function maybeJSON(path, params) {
  try { return await getJSON(path, params); } catch { return null; }
}

const shortName = (name) => String(name || "").split("/").pop();
const now = () => Date.now() / 1000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const fmt = {
  ms: (v) => (v === null || v === undefined ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`),
  pct: (v) => (v === null || v === undefined ? "–" : `${+(v * 100).toFixed(2)}%`),
  rate: (v) => `${v.toFixed(2)} req/s`,
  time: (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false }),
};

/* Percent and tags per revision id; a `latest` target counts for the latest ready revision. */
function trafficByRevision(service) {
  const out = {};
  for (const t of service.trafficStatuses || []) {
    const id = shortName(t.revision) || (t.type === LATEST ? shortName(service.latestReadyRevision) : "");
    if (!id) continue;
    const entry = (out[id] = out[id] || { percent: 0, tags: [] });
    entry.percent += t.percent || 0;
    if (t.tag) entry.tags.push(t.tag);
  }
  return out;
}

function readiness(revision) {
  const ready = (revision.conditions || []).find((c) => c.type === "Ready");
  if (!ready) return ["pending", "not-ready"];
  if (ready.state === "CONDITION_SUCCEEDED") return ["Ready", "ready"];
  if (ready.state === "CONDITION_FAILED") return [ready.reason || "Failed", "bad"];
  return ["starting", "not-ready"];
}

function parseRollout(text) {
  try {
    const state = JSON.parse(text);
    return state && typeof state.revision === "string" && state.phase ? state : null;
  } catch {
    return null;
  }
}

/* Rollouts (one per candidate revision, oldest first) from the service's recorded changes:
   each entry is a rollout state with the time the annotation took it. */
function rolloutsOf(changes) {
  const rollouts = [];
  let lastText = null;
  for (const change of changes) {
    const text = (change.annotations || {})[ROLLOUT_ANNOTATION];
    if (!text || text === lastText) continue;
    lastText = text;
    const state = parseRollout(text);
    if (!state) continue;
    let rollout = rollouts[rollouts.length - 1];
    if (!rollout || rollout.revision !== state.revision) {
      rollout = { revision: state.revision, stable: state.stable, entries: [] };
      rollouts.push(rollout);
    }
    if (state.stable) rollout.stable = state.stable;
    rollout.entries.push({ t: change.t, state });
  }
  return rollouts;
}

function describe(state) {
  const a = state.analysis || {};
  const figures = [
    a.requests !== undefined ? `${a.requests} requests` : null,
    a.errorRate !== undefined ? `error rate ${fmt.pct(a.errorRate)}` : null,
    a.p99Ms !== undefined ? `p99 ${fmt.ms(a.p99Ms)}` : null,
  ].filter(Boolean);
  const step = state.step >= 0 ? `step ${state.step + 1}` : "waiting";
  return [`${state.phase}, ${step}, ${state.weight}%`, state.message, ...figures].filter(Boolean).join(" · ");
}

async function revisionFigures(serviceName, revisionName) {
  const end = now();
  const params = { service: serviceName, revision: revisionName, end };
  const [stats, series] = await Promise.all([
    maybeJSON("/metrics", { ...params, start: end - RATE_WINDOW_S }),
    maybeJSON("/metrics/series", { ...params, start: end - SPARK_WINDOW_S, step: SPARK_STEP_S }),
  ]);
  return { stats, points: series ? series.points : [] };
}

/* The candidate's measured share of the requests the two revisions served, per step. */
async function measuredShare(serviceName, rollout, start, end) {
  const step = Math.max(1, Math.ceil((end - start) / MAX_ROLLOUT_POINTS));
  const series = (revision) => maybeJSON("/metrics/series", {
    service: serviceName, revision: `${serviceName}/revisions/${revision}`, start, end, step,
  });
  const [canary, stable] = await Promise.all([series(rollout.revision), rollout.stable ? series(rollout.stable) : null]);
  if (!canary) return [];
  const stableAt = new Map(((stable && stable.points) || []).map((p) => [p.t, p.requests]));
  return canary.points.map((p) => {
    const total = p.requests + (stableAt.get(p.t) || 0);
    return { x: p.t, y: total ? (100 * p.requests) / total : null };
  });
}

async function rolloutView(serviceName, rollout) {
  const entries = rollout.entries;
  const last = entries[entries.length - 1].state;
  const active = last.phase === "Progressing" || last.phase === "Paused";
  const start = entries[0].t;
  const end = Math.max(active ? now() : entries[entries.length - 1].t, start + 10);
  const share = await measuredShare(serviceName, rollout, start, end);
  const weight = {
    label: "canary weight (%)", step: true, markers: true,
    points: entries.map((e) => ({ x: e.t, y: e.state.weight, title: `${fmt.time(e.t)} ${describe(e.state)}` })),
  };
  const measured = { label: "measured share of requests (%)", points: share };
  const withFigures = entries.filter((e) => e.state.analysis && Object.keys(e.state.analysis).length);
  const p99 = {
    label: "analysis p99 (ms)", markers: true,
    points: withFigures.map((e) => ({ x: e.t, y: e.state.analysis.p99Ms ?? null })),
  };
  const errors = {
    label: "analysis error rate (%)", markers: true,
    points: withFigures.map((e) => ({ x: e.t, y: 100 * (e.state.analysis.errorRate ?? 0) })),
  };
  const span = { xMin: start, xMax: end };
  const rows = entries.map((e) => {
    const a = e.state.analysis || {};
    return el("tr", { class: "event" },
      el("td", {}, fmt.time(e.t)), el("td", { class: "phase" }, e.state.phase),
      el("td", { class: "num" }, e.state.step >= 0 ? e.state.step + 1 : "–"),
      el("td", { class: "num" }, `${e.state.weight}%`),
      el("td", { class: "num" }, a.requests ?? "–"), el("td", { class: "num" }, fmt.pct(a.errorRate)),
      el("td", { class: "num" }, fmt.ms(a.p99Ms)), el("td", { class: "message" }, e.state.message || ""));
  });
  return el("div", { class: "rollout", "data-revision": rollout.revision, "data-phase": last.phase },
    el("h3", {}, `Rollout of ${rollout.revision}`, rollout.stable ? ` (stable ${rollout.stable})` : "",
      ": ", el("span", { class: "phase" }, last.phase), ` at ${last.weight}%`),
    legendOf([weight, measured]),
    drawChart([weight, measured], { ...span, yMax: 100, unit: "%", className: "rollout-chart", extend: true }),
    el("div", { class: "analysis-charts" },
      el("figure", {}, el("figcaption", {}, p99.label),
        drawChart([p99], { ...span, width: 320, height: 140, unit: " ms", className: "analysis-chart" })),
      el("figure", {}, el("figcaption", {}, errors.label),
        drawChart([errors], { ...span, width: 320, height: 140, unit: "%", className: "analysis-chart" }))),
    el("table", { class: "timeline" },
      el("tr", {}, ...["time", "phase", "step", "weight", "requests", "error rate", "p99", "message"]
        .map((h) => el("th", {}, h))), ...rows),
  );
}

function revisionRow(revision, traffic, figures) {
  const id = shortName(revision.name);
  const share = traffic[id] || { percent: 0, tags: [] };
  const stats = figures.stats || { requests: 0, errors: 0, p50_ms: null, p99_ms: null };
  const rate = stats.requests / RATE_WINDOW_S;
  const errorRate = stats.requests ? stats.errors / stats.requests : null;
  const [ready, readyClass] = readiness(revision);
  const spark = drawChart([{ label: "requests per 5 s", points: figures.points.map((p) => ({ x: p.t, y: p.requests })) }],
    { width: 160, height: 28, compact: true, className: "sparkline" });
  return el("tr", { class: "revision", "data-revision": id, "data-percent": share.percent },
    el("td", {}, id), el("td", {}, ...share.tags.map((t) => el("span", { class: "tag" }, t))),
    el("td", { class: "num percent" }, `${share.percent}%`), el("td", { class: readyClass }, ready),
    el("td", { class: "num rate", "data-value": rate.toFixed(4) }, fmt.rate(rate)),
    el("td", { class: `num error-rate${errorRate ? " bad" : ""}`, "data-value": errorRate ?? "" }, fmt.pct(errorRate)),
    el("td", { class: "num p50" }, fmt.ms(stats.p50_ms)), el("td", { class: "num p99" }, fmt.ms(stats.p99_ms)),
    el("td", {}, spark));
}

async function serviceView(service, revisions) {
  const traffic = trafficByRevision(service);
  const ordered = revisions.slice().sort((a, b) =>
    ((traffic[shortName(b.name)] || {}).percent || 0) - ((traffic[shortName(a.name)] || {}).percent || 0)
    || String(b.createTime).localeCompare(String(a.createTime)));
  const [figures, history] = await Promise.all([
    Promise.all(ordered.map((r) => revisionFigures(service.name, r.name))),
    maybeJSON("/history", { service: service.name }),
  ]);
  const rollouts = rolloutsOf(history ? history.changes : []).reverse();
  const rolloutViews = await Promise.all(rollouts.map((r) => rolloutView(service.name, r)));
  const header = ["revision", "tags", "traffic", "status", "requests", "errors", "p50", "p99", `last ${SPARK_WINDOW_S / 60} min`];
  return el("section", { class: "service", "data-service": shortName(service.name) },
    el("h2", {}, shortName(service.name)),
    el("p", { class: "sub" }, service.name, " · ", service.uri ? el("a", { href: service.uri }, service.uri) : "no URL yet"),
    el("table", { class: "revisions" },
      el("tr", {}, ...header.map((h) => el("th", {}, h))),
      ...ordered.map((r, i) => revisionRow(r, traffic, figures[i]))),
    rolloutViews.length ? null : el("p", { class: "sub" }, "No canary rollout recorded for this service."),
    ...rolloutViews);
}

async function refresh() {
  const state = await getJSON("/state");
  const services = Object.values(state.services).sort((a, b) => a.name.localeCompare(b.name));
  const revisions = Object.values(state.revisions);
  const views = await Promise.all(services.map((s) =>
    serviceView(s, revisions.filter((r) => r.name.startsWith(`${s.name}/revisions/`)))));
  const main = document.getElementById("services");
  main.replaceChildren(...(views.length ? views : [el("p", { class: "sub" }, "No services yet.")]));
  refreshes += 1;
  document.body.setAttribute("data-refreshes", String(refreshes));
  document.getElementById("updated").textContent =
    `updated ${fmt.time(now())}; request figures over the last ${RATE_WINDOW_S} s, every ${POLL_MS / 1000} s`;
}

async function loop() {
  const error = document.getElementById("error");
  try {
    await refresh();
    error.hidden = true;
  } catch (exc) {
    error.textContent = `Cannot reach the emulator: ${exc.message}`;
    error.hidden = false;
  }
  setTimeout(loop, POLL_MS);
}

loop();
