"""The model monitor page: one HTML document with inline CSS and JS (nothing fetched from elsewhere).

The script reads ``api/models`` (the models, listed at the top: every valid spec, and each broken spec file with its
error) and ``api/state?model=<name>`` (relative: the app is mounted at ``airloop/`` below Airflow's ``[api] base_url``)
and renders them; it computes nothing. The model shown is the page's own ``?model=`` (``models.default`` without one),
so a link names the model it shows; each model in the list links to ``?model=<name>``. Promote and rollback POST
``../api/v2/dags/<name>_registry/dagRuns`` (the model's own registry DAG, as the state names it) and follow the run
they started (``../api/v2/dags/<name>_registry/dagRuns/<run id>``) until it ends, then show the registry again; the
pending approvals are read from ``../api/v2/dags/<name>_ab_evaluate/dagRuns/~/hitlDetails``: Airflow's REST API,
with the UI's own ``_token`` cookie (same origin). Every URL is relative, so the page works wherever Airflow is served
(``https://host/airflow/airloop/`` as well as ``/airloop/``).

Inside the Airflow UI the page is an iframe sandboxed without ``allow-modals`` and ``allow-popups``: an action is
confirmed on the page itself (``confirm()`` would be refused silently), and links open in the frame (Airflow shows the
frame's location in its own URL) instead of a new tab.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>airloop model monitor</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; padding: 16px 24px; color: #1f2933; background: #f7f9fb; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 8px; }
  .muted { color: #6b7785; } .grid { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .card { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 12px 14px; margin-bottom: 12px; }
  .big { font-size: 26px; font-weight: 600; } table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef1f4; vertical-align: top; }
  th { font-weight: 600; color: #52606d; } .pill { padding: 1px 8px; border-radius: 10px; background: #e4e7eb; }
  .drift, .reject, .failed { background: #fde2e1; } .no_drift, .promote, .success { background: #dff5e3; }
  .alert { background: #fdebd0; } ul.rules { margin: 4px 0 0 18px; padding: 0; } ul.rules li { margin: 2px 0; }
  button { padding: 6px 14px; margin-right: 8px; border-radius: 6px; border: 1px solid #9aa5b1; background: #fff; }
  button:disabled { color: #9aa5b1; } #result { margin-top: 8px; } .error { color: #b42318; }
  .row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; } svg { background: #fbfcfd; }
  input, select { padding: 3px 6px; margin-right: 6px; }
  #models a { margin-right: 4px; } .model { display: inline-block; margin: 0 18px 4px 0; }
  .model.selected a { font-weight: 600; color: #1f2933; text-decoration: none; }
  .model.selected { border-bottom: 2px solid #3e7bfa; }
</style>
</head>
<body>
<h1>Model monitor <span id="model" class="muted"></span></h1>
<div class="card" id="models"><span class="muted">loading the models...</span></div>
<div id="status" class="muted">loading...</div>
<div id="approval"></div>
<div class="grid" id="versions"></div>
<div class="card"><h2>Judged per group <span class="muted">(test set of each version's training run)</span></h2>
  <div id="groups"></div></div>
<div class="row2">
  <div class="card"><h2>Live routing and the A/B evaluation</h2>
    <div id="routing"></div><div id="evaluation"></div></div>
  <div class="card"><h2>Drift</h2><div id="drift"></div><svg id="chart" width="560" height="130"></svg>
    <div id="estimate"></div><svg id="auc-chart" width="560" height="130"></svg></div>
</div>
<div class="card"><h2>Actions (audited runs of <span id="dag"></span>)</h2>
  <button id="promote" data-action="promote">Promote challenger</button>
  <button id="rollback" data-action="rollback">Roll back</button>
  <div id="result"></div></div>
<div class="card"><h2>Decision history <span class="muted">(newest first)</span></h2>
  <select id="kind"><option value="">every kind</option></select><input id="filter" placeholder="filter text">
  <table><thead><tr><th>id</th><th>decided at (UTC)</th><th>kind</th><th>outcome</th><th>by</th><th>what</th></tr>
  </thead><tbody id="history"></tbody></table></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const num = (v, d = 4) => (typeof v === "number" ? v.toFixed(d) : "-");
// Inside the Airflow UI (an iframe without allow-popups) a new tab is refused: links open in the frame there.
const framed = window.self !== window.top;
const link = (url, text) => (url ? `<a href="${esc(url)}"${framed ? "" : ' target="_blank" rel="noopener"'}>` +
  `${esc(text)}</a>` : esc(text));
const path = (...parts) => parts.map((p) => encodeURIComponent(p)).join("/");
// The model this page shows: its own ?model= (a link names it), else the default the state answers with.
const selected = new URLSearchParams(window.location.search).get("model");
const modelQuery = (name) => "?model=" + encodeURIComponent(name);
let state = null;

async function renderModels() {
  const found = await fetch("api/models", {credentials: "same-origin"});
  if (!found.ok) { $("models").innerHTML = `<span class="error">models: HTTP ${found.status}</span>`; return; }
  const o = await found.json(), shown = selected || o.default;
  const models = o.models.map((m) => `<span class="model${m.name === shown ? " selected" : ""}"
    data-model="${esc(m.name)}" title="${esc(m.description)}"><a href="${esc(modelQuery(m.name))}">${esc(m.name)}</a>
    <span class="muted">${m.error ? "registry unreadable: " + esc(m.error) : m.champion ? "champion v" +
    esc(m.champion) : "no champion"}${m.default ? ", default" : ""}
    ${m.tags.length ? "- " + m.tags.map(esc).join(", ") : ""}</span></span>`);
  const broken = o.broken.map((b) => `<div class="broken" data-broken="${esc(b.name)}"><b>${esc(b.name)}</b>
    <span class="error">broken spec: ${esc(b.error)}</span></div>`);
  $("models").innerHTML = `<h2>Models</h2>${models.join("") || '<span class="muted">no valid spec</span>'}` +
    broken.join("");
}

function versionCard(alias, v) {
  if (!v) return `<div class="card"><h2>${esc(alias)}</h2><div class="muted">none</div></div>`;
  const run = v.run || {};
  const metrics = Object.entries(run.test_metrics || {}).map(([k, x]) => `${esc(k)} ${num(x)}`).join(", ");
  const important = (run.importance || []).map((f) => `${esc(f.feature)} ${num(f.importance)}`).join(", ");
  const last = v.last_decision;
  const when = last ? `${esc(last.kind)} by ${esc(last.decided_by)} at ${esc(last.decided_at)}`
    : `gate: ${esc(v.gate.decision || "-")} by ${esc(v.gate.by || "-")} at ${esc(v.gate.at || "-")}`;
  return `<div class="card" data-alias="${esc(alias)}"><h2>${esc(alias)}</h2>
    <div class="big">v${esc(v.version)}</div><table>
    <tr><th>training run</th><td>${link(run.url, run.id || "-")}</td></tr>
    <tr><th>dataset</th><td>${esc(v.dataset_version)}</td></tr>
    <tr><th>test metrics</th><td>${metrics || "-"}</td></tr>
    <tr><th title="permutation importance: the test ROC AUC lost when the feature is shuffled">global importance</th>
      <td class="importance">${important || "-"}</td></tr>
    <tr><th>last decision</th><td>${when}</td></tr></table></div>`;
}

function renderGroups(versions) {
  const aliases = ["champion", "challenger"].filter((a) => versions[a] && versions[a].run && versions[a].run.groups);
  const figures = Object.fromEntries(aliases.map((a) => [a, versions[a].run.groups]));
  const rows = [];
  const stats = ["rows", "roc_auc", "recall", "calibration_gap", "alert_rate"];
  const groupNames = [...new Set(aliases.flatMap((a) => Object.keys(figures[a])))];
  for (const g of groupNames) {
    const levels = [...new Set(aliases.flatMap((a) => Object.keys(figures[a][g] || {})))];
    for (const l of levels) {
      const cells = aliases.map((a) => stats.map((s) => {
        const x = ((figures[a][g] || {})[l] || {})[s];
        return `<td>${x === undefined ? "-" : s === "rows" ? esc(x) : num(x)}</td>`;
      }).join("")).join("");
      rows.push(`<tr data-group="${esc(g)}"><td>${esc(g)}</td><td>${esc(l)}</td>${cells}</tr>`);
    }
  }
  const head = aliases.map((a) => stats.map((s) => `<th>${esc(a)} ${esc(s)}</th>`).join("")).join("");
  const worst = state.evaluation && state.evaluation.worst_group;
  $("groups").innerHTML = !rows.length ? `<p class="muted">no per-group figures (the spec names no
    evaluation.groups, or the versions were trained before them)</p>` :
    `<table><tr><th>group</th><th>level</th>${head}</tr>${rows.join("")}</table>` +
    (worst ? `<p>A/B: worst group of the challenger: ${esc(worst)}</p>` : "");
}

function renderRouting(r, e) {
  const weights = Object.entries(r.weights).map(([k, w]) => `${esc(k)} ${esc(w)}`).join(" / ");
  $("routing").innerHTML = `<table><tr><th>mode</th><td>${esc(r.mode)}</td></tr>
    <tr><th>weights</th><td>${weights}</td></tr><tr><th>experiment</th><td>${esc(r.experiment)}</td></tr>
    <tr><th>running</th><td>${esc(r.running || "no experiment running")}</td></tr></table>`;
  if (!e) { $("evaluation").innerHTML = `<p class="muted">no evaluation yet</p>`; return; }
  const m = e.metric;
  const arms = Object.entries(e.arms).map(([alias, a]) => `<tr><td>${esc(alias)}</td><td>${esc(a.labelled)}</td>
    <td>${num(a[m])}</td><td>${a[m + "_ci"] ? num(a[m + "_ci"][0]) + " .. " + num(a[m + "_ci"][1]) : "-"}</td></tr>`);
  const interval = e.interval ? `${num(e.interval[0])} .. ${num(e.interval[1])}` : "-";
  $("evaluation").innerHTML = `<p>Evaluation #${esc(e.id)} at ${esc(e.decided_at)}
    ${e.current ? "" : '<span class="muted">(an earlier experiment: ' + esc(e.experiment) + ")</span>"}</p>
    <table><tr><th>variant</th><th>labelled rows</th><th>${esc(m)}</th><th>interval</th></tr>${arms.join("")}</table>
    <p>difference ${num(e.estimate)} (always-valid interval ${interval}) -
    <span class="pill ${esc(e.action)}">${esc(e.action)}</span>
    ${e.rows_needed ? "; rows still needed: " + esc(e.rows_needed) : ""}</p><p class="muted">${esc(e.reason)}</p>
    <p class="muted">${e.paired ? "paired on the same requests" : "arms compared unpaired"}${e.variance_reduction
      ? "; pairing saves " + num(100 * e.variance_reduction.rows_saved_at_equal_power, 0) +
        "% of labelled rows at equal power" : ""}${(e.srm || []).map((s) => "<br>" + esc(s)).join("")}</p>`;
}

function renderDrift(d) {
  const l = d.latest, top = l ? l.drifted_features : [];
  $("drift").innerHTML = !l ? `<p class="muted">no drift verdict yet</p>` : `<p>
    <span class="pill ${esc(l.verdict)}">${esc(l.verdict)}</span> on ${esc(l.source)} up to
    ${esc((l.window || {}).end)}: drifted share ${num(l.drifted_share, 2)}
    (${esc(l.drifted_feature_count)} features${top.length ? ": " + top.map(esc).join(", ") : ""})
    - ${l.report ? link("reports/" + path(...l.report), "HTML report") : esc(l.report_url || "no report")}</p>
    <p>Importance in drifted features: <b>${typeof l.importance_weighted_share === "number"
      ? num(100 * l.importance_weighted_share, 3) + "%" : "unknown"}</b>; decision:
      <span class="pill ${l.retrain ? "drift" : l.alert ? "alert" : "no_drift"}">${l.retrain ? "retrain"
      : l.alert ? "alert" : "none"}</span>; multivariate: ${l.multivariate ? "ROC AUC " +
      num(l.multivariate.roc_auc, 3) + (l.multivariate.features.length ? " (relies on " +
      l.multivariate.features.map(esc).join(", ") + ")" : "") : "not checked"}</p>` +
      (l.rules && l.rules.length ? `<ul class="rules">${l.rules.map((r) =>
      `<li><b>${esc(r.decision)}</b> <code>${esc(r.rule)}</code>: ${esc(r.message)}</li>`).join("")}</ul>` : "") +
      segmentTable(l.segments);
  plot($("chart"), d.series, [{key: "drifted_share", color: "#3e7bfa", line: true, name: "drifted share"},
    {key: "importance_weighted_share", color: "#d64545", line: true, name: "importance in drifted features"}], 0, 1,
    `drifted share of features (blue) and share of the model's importance in them (red) per run`);
  renderEstimate(l);
  const aucs = d.series.flatMap((p) => [p.estimated_roc_auc, p.realised_roc_auc]).filter((v) => typeof v === "number");
  plot($("auc-chart"), d.series, [{key: "estimated_roc_auc", color: "#7b61ff", line: true, name: "estimated"},
    {key: "realised_roc_auc", color: "#e8833a", line: false, name: "realised"}],
    Math.min(0.5, ...aucs), Math.min(1, Math.max(0.6, ...aucs) + 0.05),
    "ROC AUC per run: estimated without labels (line), realised (dots)");
}

function segmentTable(segments) {
  // Per segment of the features the spec names: share vs training, estimated and realised ROC AUC (test in brackets).
  const pct = (v) => (typeof v === "number" ? (100 * v).toFixed(1) + "%" : "-");
  const rows = Object.entries(segments || {}).flatMap(([name, per]) => Object.entries(per).map(([s, e]) =>
    `<tr><td>${esc(name)}</td><td>${esc(s)}</td><td>${esc(e.rows)}</td><td>${pct(e.share)}
    (${pct(e.training_share)})</td><td>${num(e.estimated_roc_auc, 3)}</td><td>${num(e.realised_roc_auc, 3)}
    (${num(e.test_roc_auc, 3)})</td></tr>`));
  return rows.length ? `<table class="segments"><tr><th>segment</th><th></th><th>rows</th><th>share (training)</th>
    <th>estimated AUC</th><th>realised AUC (test)</th></tr>${rows.join("")}</table>` : "";
}

function renderEstimate(l) {
  // CBPE: what the champion's own probabilities imply, beside what the outcomes show once they arrive.
  const e = l && l.performance_estimate, r = l && l.performance, a = (v) => num(v, 3);
  if (!e) { $("estimate").innerHTML = l ? `<p class="muted">no label-free estimate for this window</p>` : ""; return; }
  const range = (i) => (i ? ` (${a(i[0])} .. ${a(i[1])} if calibrated)` : "");
  const labelled = e.labelled, realised = r && typeof r.roc_auc === "number";
  $("estimate").innerHTML = `<p>Estimated ROC AUC without labels <b>${a(e.estimated_roc_auc)}</b>${range(e.interval)}
    on ${esc(e.rows)} rows; at training ${a(e.reference_estimated_roc_auc)} estimated,
    ${a(e.reference_realised_roc_auc)} realised: drop ${a(e.drop)}
    <span class="pill ${e.dropped ? "drift" : "no_drift"}">limit ${num(e.max_drop, 2)}</span></p><p>` +
    (realised ? `Realised ROC AUC <b>${a(r.roc_auc)}</b> on ${esc(r.labelled_rows)} labelled rows, where the
    estimate is ${a(labelled && labelled.estimated_roc_auc)}${range(labelled && labelled.interval)}`
    : `<span class="muted">no outcomes for this window yet${delay()}</span>`) +
    `</p><p class="muted">The estimate follows changes in who arrives; only outcomes reveal a changed relation between
    features and ${esc((state.target || {}).name || "the outcome")} (concept drift).</p>`;
}

function delay() {
  const days = (state.target || {}).delay_days;
  return days ? ` (they arrive up to ${esc(days)} days later)` : "";
}

function plot(svg, series, lines, lo, hi, caption) {
  // One small chart of the runs oldest first: each line a key of the series' points, each point a run.
  const w = 560, h = 130, pad = 24, n = series.length;
  const x = (i) => pad + (n < 2 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (n - 1));
  const y = (v) => h - pad - ((v - lo) / (hi - lo || 1)) * (h - 2 * pad);
  let out = `<line x1="${pad}" y1="${y(lo)}" x2="${w - pad}" y2="${y(lo)}" stroke="#cbd2d9"/>
    <line x1="${pad}" y1="${y(hi)}" x2="${w - pad}" y2="${y(hi)}" stroke="#eef1f4"/>
    <text x="2" y="${y(hi) + 4}" font-size="10">${num(hi, 2)}</text>
    <text x="2" y="${y(lo) + 4}" font-size="10">${num(lo, 2)}</text>`;
  for (const {key, color, line, name} of lines) {
    const pts = series.map((p, i) => [p, i]).filter(([p]) => typeof p[key] === "number");
    if (line) {
      out += `<polyline fill="none" stroke="${color}" stroke-width="1.5"
        points="${pts.map(([p, i]) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ")}"/>`;
    }
    out += pts.map(([p, i]) => `<circle cx="${x(i)}" cy="${y(p[key])}" r="3.5"
      fill="${p.verdict === "drift" && key === "drifted_share" ? "#d64545" : color}"><title>#${esc(p.id)}
      ${esc(p.at)}: ${esc(p.verdict)} ${esc(name || key)} ${num(p[key], 3)} (${esc(p.source)})</title></circle>`)
      .join("");
  }
  svg.innerHTML = out + `<text x="${pad}" y="${h - 4}" font-size="10" fill="#6b7785">${esc(caption)} (${n})</text>`;
}

function renderHistory() {
  const kind = $("kind").value, text = $("filter").value.toLowerCase();
  $("history").innerHTML = state.history.filter((r) => (!kind || r.kind === kind) &&
    (!text || JSON.stringify(r).toLowerCase().includes(text))).map((r) => `<tr><td>${esc(r.id)}</td>
    <td>${esc(r.decided_at.slice(0, 19))}</td><td>${esc(r.kind)}</td><td>${esc(r.outcome || "-")}</td>
    <td>${esc(r.decided_by)}</td><td>${esc(r.summary)}</td></tr>`).join("");
}

async function renderApproval() {
  const url = `../api/v2/dags/${state.user.approval_dag}/dagRuns/~/hitlDetails?response_received=false&limit=20`;
  try {
    const found = await fetch(url, {credentials: "same-origin"});
    if (!found.ok) { $("approval").innerHTML = ""; return; }
    const waiting = (await found.json()).hitl_details || [];
    const answer = (ti) => "../" + path("dags", ti.dag_id, "runs", ti.dag_run_id, "tasks", ti.task_id) +
      (ti.map_index >= 0 ? "/mapped/" + ti.map_index : "") + "/required_actions";
    $("approval").innerHTML = !waiting.length ? "" : `<div class="card" id="approvals"><h2>Waiting for approval</h2>` +
      waiting.map((a) => `<p>${esc(a.subject)} (${esc(a.task_instance.dag_id)} / ${esc(a.task_instance.dag_run_id)})
      - ${link(answer(a.task_instance), "answer under Required Actions")}</p>`).join("") + `</div>`;
  } catch (error) { $("approval").innerHTML = ""; }
}

function ask(action) {
  const dag = state.user.registry_dag;
  $("result").innerHTML = `Trigger ${esc(dag)} with action=${esc(action)}?
    <button id="confirm">Confirm ${esc(action)}</button><button id="cancel">Cancel</button>`;
  $("confirm").onclick = () => trigger(dag, action).catch(show);
  $("cancel").onclick = () => { $("result").innerHTML = ""; };
}

async function trigger(dag, action) {
  $("result").textContent = `triggering ${dag} with action=${action}...`;
  const sent = await fetch(`../api/v2/dags/${path(dag)}/dagRuns`, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({logical_date: null, conf: {action}, note: `${action} from the model monitor`})});
  const body = await sent.json().catch(() => ({}));
  if (!sent.ok) {
    const why = esc(JSON.stringify(body.detail || body));
    $("result").innerHTML = `<span class="error">HTTP ${sent.status}: ${why}</span>`;
    return;
  }
  await follow(dag, body.dag_run_id, action, body.state);
}

async function follow(dag, runId, action, known) {
  // Shows the run's state until it ends (Airflow's finished states), then the registry as the run left it.
  let runState = known;
  if (!known) {
    const found = await fetch(`../api/v2/dags/${path(dag, "dagRuns", runId)}`, {credentials: "same-origin"});
    runState = found.ok ? (await found.json()).state : `HTTP ${found.status}`;
  }
  $("result").innerHTML = `${esc(action)}: run ${link("../" + path("dags", dag, "runs", runId), runId)}
    <span class="pill ${esc(runState)}" id="run-state">${esc(runState)}</span>`;
  if (state.airflow.finished_run_states.includes(runState)) { await load(); return; }
  if (!runState.startsWith("HTTP")) setTimeout(() => follow(dag, runId, action).catch(show), 1000);
}

async function load() {
  renderModels().catch((error) => { $("models").innerHTML = `<span class="error">${esc(error)}</span>`; });
  const found = await fetch("api/state" + (selected ? modelQuery(selected) : ""), {credentials: "same-origin"});
  if (!found.ok) {
    const detail = found.status === 404 ? (await found.json().catch(() => ({}))).detail : "sign in to Airflow first";
    $("status").innerHTML = `<span class="error">HTTP ${found.status}: ${esc(detail)}</span>`;
    return;
  }
  state = await found.json();
  $("model").textContent = state.model;
  $("status").textContent = `signed in as ${state.user.name}; MLflow UI: ${state.mlflow_ui}`;
  $("versions").innerHTML = Object.entries(state.versions).map(([a, v]) => versionCard(a, v)).join("");
  renderGroups(state.versions);
  renderRouting(state.routing, state.evaluation);
  renderDrift(state.drift);
  $("dag").textContent = state.user.registry_dag;
  for (const action of ["promote", "rollback"]) {
    const may = state.user.may[action];
    $(action).disabled = !may.allowed;
    $(action).title = may.why;
    $(action).onclick = () => ask(action);
  }
  const kinds = [...new Set(state.history.map((r) => r.kind))].sort();
  $("kind").innerHTML = `<option value="">every kind</option>` +
    kinds.map((k) => `<option>${esc(k)}</option>`).join("");
  $("kind").onchange = renderHistory; $("filter").oninput = renderHistory;
  renderHistory();
  renderApproval();
}
function show(error) { $("status").innerHTML = `<span class="error">${esc(error)}</span>`; }
load().catch(show);
</script>
</body>
</html>
"""
