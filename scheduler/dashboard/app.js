// The kiln dashboard: a page over the scheduler's HTTP API (/api/v1, docs/api.md). The token is
// kept in sessionStorage (this tab only), sent as "Authorization: Bearer", never put in a URL.
// Everything the API returns is put in the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;
const MAX_LOG_LINES = 2000;
const TOKEN_KEY = "kiln.token";
let me = null;            // {user, admin}
let timer = null;
let view = { name: "", id: 0 };
let charts = {};
let logState = { job: 0, after: 0 };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch("/api/v1" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (r.headers.get("Content-Type") !== "application/json") {
    if (!r.ok) throw new ApiError(r.status, r.statusText);
    return r;
  }
  const j = await r.json();
  if (!r.ok) throw new ApiError(r.status, (j && j.error && j.error.message) || r.statusText);
  return j;
}

const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}
function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}
function time(ms) {
  if (!ms) return "-";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; ++i; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function num(v, digits) { return typeof v === "number" ? v.toFixed(digits) : "-"; }
function stateBadge(state) { return el("span", state, "state " + state); }

function showBanner(text) {
  const b = $("banner");
  b.textContent = text;
  b.hidden = !text;
}

function showOnly(section) {
  for (const id of ["login", "queue", "nodes", "services", "job"]) $(id).hidden = id !== section;
}

// ---- views --------------------------------------------------------------------------------

// "~14:05" when a pending job should start, "unknown", or "-".
function startEstimate(j) {
  const e = j.start_estimate;
  if (!e) return "-";
  if (typeof e.at !== "number") return "unknown";
  const d = new Date(e.at);
  const hhmm = d.toTimeString().slice(0, 5);
  return "~" + (e.at - Date.now() > 20 * 3600 * 1000 ? d.toISOString().slice(5, 10) + " " : "") + hhmm;
}

async function renderQueue() {
  const all = $("show-finished").checked;
  let jobs = [];
  let after = null;
  for (let pages = 0; pages < 50; ++pages) {  // up to 50,000 jobs, 1000 a page
    const page = await api("GET", "/jobs?limit=1000" + (all ? "&all=true" : "") +
                                  (after === null ? "" : "&after_id=" + after));
    jobs = jobs.concat(page.jobs);
    if (typeof page.next_after_id !== "number") break;
    after = page.next_after_id;
  }
  jobs.reverse();  // newest first
  if (jobs.length > 1000) jobs = jobs.slice(0, 1000);
  // An array's own line stands for its tasks that have not started (12[40-999]); it goes once
  // they all have. Tasks show as 12_3.
  jobs = jobs.filter((j) => !(j.array && j.state === "PENDING" && !j.array.pending));
  fillRows($("queue-rows"), jobs.map((j) => {
    let id = String(j.id);
    if (j.array) id += `[${j.state === "PENDING" ? j.array.pending : j.array.indices}]`;
    if (j.array_job !== undefined) id = `${j.array_job}_${j.array_index}`;
    const link = el("a", id);
    link.href = "#/jobs/" + j.id;
    const m = j.metrics || {};
    const progress = m.step !== undefined ? `${m.step}/${m.total_steps}` : "-";
    const state = stateBadge(j.state + (j.held && j.state === "PENDING" ? " (held)" : ""));
    const reason = el("span", j.reason || "", "reason");
    return row([link, j.name, j.user || "-", j.priority || 0, state, j.ranks, j.node || "-",
                progress, startEstimate(j), reason]);
  }));
}

async function renderNodes() {
  const nodes = await api("GET", "/nodes");
  fillRows($("node-rows"), nodes.map((n) => row([
    n.name, stateBadge(n.state) , `${n.used_slots}/${n.slots}`,
    n.gpus ? `${n.used_gpus}/${n.gpus}` : "-",
    n.memory_bytes ? `${bytes(n.used_memory_bytes)} / ${bytes(n.memory_bytes)}` : "-",
    Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-",
    time(n.last_seen_at),
  ])));
}

async function renderServices() {
  const services = await api("GET", "/services");
  fillRows($("service-rows"), services.map((s) => {
    const state = s.state === "active" && s.rolling ? "rolling" : s.state;
    const replicas = (s.replica_jobs || []).map((r) => {
      const link = el("a", `${r.job_id}${r.ready ? "" : " (" + r.state.toLowerCase() + ")"}`);
      link.href = "#/jobs/" + r.job_id;
      return link;
    });
    const cell = el("span", "");
    replicas.forEach((a, i) => { if (i) cell.append(" "); cell.append(a); });
    return row([s.name, s.user, stateBadge(state.toUpperCase()), s.version,
                `${s.ready}/${s.replicas}`, (s.requests_per_s || 0).toFixed(1),
                `${(s.p99_ms || 0).toFixed(2)} ms`, (s.endpoints || []).join(" ") || "-", cell]);
  }));
}

function lineChart(canvas, xTitle, yTitle) {
  if (typeof Chart === "undefined") return null;  // chart.js missing: the page works without
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      interaction: { mode: "nearest", intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
      scales: { x: { type: "linear", title: { display: true, text: xTitle } },
                y: { title: { display: true, text: yTitle } } },
      plugins: { legend: { display: true, position: "bottom" } },
    },
  });
}

const COLORS = ["#c2410c", "#1d4ed8", "#15803d", "#7c3aed", "#b42318"];

function setSeries(chart, canvas, series) {
  let points = 0;
  for (const s of series) points += s.data.length;
  canvas.dataset.points = String(points);
  // For tests and the page-load benchmark: when a chart first had points.
  if (points > 0 && chart && window.kilnFirstChartMs === undefined) {
    window.kilnFirstChartMs = performance.now();
  }
  if (!chart) return;
  chart.data.datasets = series.map((s, i) => ({
    label: s.label, data: s.data, borderColor: COLORS[i % COLORS.length],
    backgroundColor: COLORS[i % COLORS.length],
    pointRadius: s.data.length < 30 ? 3 : 0,
  }));
  chart.update("none");
}

function renderCharts(history) {
  if (!charts.loss) {
    charts.loss = lineChart($("loss-chart"), "step", "loss");
    charts.acc = lineChart($("acc-chart"), "epoch", "accuracy");
  }
  const loss = history.step.filter((p) => typeof p.loss === "number")
                            .map((p) => ({ x: p.step, y: p.loss }));
  // The newest report ends the curve when the kept points do not have it yet.
  const latest = history.latest || {};
  if (typeof latest.loss === "number" && typeof latest.step === "number" &&
      (!loss.length || latest.step > loss[loss.length - 1].x)) {
    loss.push({ x: latest.step, y: latest.loss });
  }
  loss.sort((a, b) => a.x - b.x);  // a resumed attempt repeats steps from its checkpoint
  setSeries(charts.loss, $("loss-chart"), [{ label: "loss", data: loss }]);
  const names = new Set();
  for (const p of history.epoch) {
    for (const k of Object.keys(p)) if (k.endsWith("_accuracy")) names.add(k);
  }
  setSeries(charts.acc, $("acc-chart"), [...names].sort().map((name) => ({
    label: name,
    data: history.epoch.filter((p) => typeof p[name] === "number")
                       .map((p) => ({ x: p.epoch, y: p[name] })),
  })));
}

function mayAct(job) { return me && (me.admin || me.user === job.user); }

function renderJobFacts(job) {
  const m = job.metrics || {};
  const facts = [
    ["User", job.user], ["Priority", job.priority], ["Ranks", job.ranks],
    ["Node", job.node || "-"], ["Submitted", time(job.submitted_at)],
    ["Started", time(job.started_at)], ["Finished", time(job.finished_at)],
    ["Progress", m.step !== undefined ? `epoch ${m.epoch}/${m.epochs}, step ${m.step}/${m.total_steps}` : "-"],
    ["Loss", num(m.loss, 4)], ["Test accuracy", num(m.test_accuracy, 4)],
    ["Samples/s", num(m.samples_per_s, 0)],
  ];
  $("job-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

function renderTimeline(job) {
  const box = $("timeline");
  const attempts = job.attempts.filter((a) => a.started_at);
  if (!attempts.length) { box.replaceChildren(); return; }
  const start = attempts[0].started_at;
  const end = Math.max(Date.now(), ...attempts.map((a) => a.ended_at || Date.now()));
  const span = Math.max(1, end - start);
  box.replaceChildren(...attempts.map((a, i) => {
    const s = el("span");
    s.style.left = ((a.started_at - start) / span * 100) + "%";
    s.style.width = Math.max(0.5, ((a.ended_at || Date.now()) - a.started_at) / span * 100) + "%";
    s.style.background = a.outcome === "COMPLETED" ? "#15803d"
                       : a.ended_at ? "#b42318" : "#1d4ed8";
    s.title = `attempt ${a.attempt}: ${a.outcome || "running"} ${a.reason || ""}`;
    return s;
  }));
}

async function download(job, step) {
  try {
    const r = await api("GET", `/jobs/${job}/checkpoints/${step}`);
    const blob = await r.blob();
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = `job-${job}-step-${step}.pt`;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  } catch (e) {
    showBanner(`download of step ${step}: ${e.message}`);
  }
}

async function followLogs(id, finished) {
  if (logState.job !== id) {
    logState = { job: id, after: 0 };
    $("logs").textContent = "";
    const first = await api("GET", `/jobs/${id}/logs?tail=200&limit=200`);
    appendLogs(first);
  }
  if (!$("follow-logs").checked) return;
  for (let pages = 0; pages < 5; ++pages) {
    const page = await api("GET", `/jobs/${id}/logs?limit=1000&after_seq=${logState.after}`);
    appendLogs(page);
    if (!page.more) break;
  }
}

function appendLogs(page) {
  const pre = $("logs");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (page.lines.length) {
    pre.appendChild(document.createTextNode(page.lines.map((l) => l.line).join("\n") + "\n"));
    while (pre.childNodes.length > 1 &&
           pre.textContent.length > MAX_LOG_LINES * 120) pre.removeChild(pre.firstChild);
  }
  if (typeof page.next_after_seq === "number") logState.after = page.next_after_seq;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// A sweep's leaderboard (docs/sweeps.md): its trials best first, and the best one's checkpoint.
function renderSweep(sweep) {
  $("sweep-part").hidden = !sweep;
  if (!sweep) return;
  const metric = (sweep.objective || {}).metric || "";
  fillRows($("trial-rows"), (sweep.trials || []).map((t) => {
    let job = "-";
    if (typeof t.job_id === "number") {
      job = el("a", t.job_id);
      job.href = "#/jobs/" + t.job_id;
    }
    const params = Object.entries(t.params || {})
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
    return row([t.trial, job, stateBadge(t.state), t.epochs,
                typeof t.best === "number" ? t.best.toFixed(4) : "-", params]);
  }));
  const b = sweep.best;
  $("sweep-best").textContent = !b ? "" :
      `Best: trial ${b.trial} (job ${b.job_id}), ${metric} ${Number(b.best).toFixed(4)}` +
      (typeof b.checkpoint_step === "number"
           ? `, checkpoint step ${b.checkpoint_step}: kiln deploy ${b.job_id} --best --name NAME`
           : "");
}

async function renderJob(id) {
  const [job, history] = await Promise.all([api("GET", "/jobs/" + id),
                                            api("GET", `/jobs/${id}/metrics`)]);
  $("job-title").textContent = `Job ${job.id}: ${job.name}`;
  const badge = $("job-state");
  badge.textContent = job.state + (job.held ? " (held)" : "");
  badge.className = "state " + job.state;
  $("job-reason").textContent = job.reason || "";
  const may = mayAct(job);
  const open = job.state === "PENDING" || job.state === "RUNNING";
  $("cancel-btn").hidden = !(may && open);
  $("hold-btn").hidden = !(may && job.state === "PENDING" && !job.held);
  $("release-btn").hidden = !(may && job.state === "PENDING" && job.held);
  renderJobFacts(job);
  renderSweep(job.sweep);
  fillRows($("attempt-rows"), job.attempts.map((a) => row([
    a.attempt, (a.nodes || []).map((n) => (typeof n === "string" ? n : n.node || JSON.stringify(n))).join(", "),
    time(a.started_at), time(a.ended_at), a.outcome || "running",
    a.exit_code >= 0 ? a.exit_code : "-", el("span", a.reason || "", "reason"),
  ])));
  renderTimeline(job);
  fillRows($("checkpoint-rows"), job.checkpoints.map((c) => {
    const b = el("button", "Download");
    b.addEventListener("click", () => download(job.id, c.step));
    const metrics = Object.entries(c.metrics || {})
        .map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(4) : v}`).join(", ");
    return row([c.step, c.epoch, metrics || "-", bytes(c.bytes), time(c.created_at), b]);
  }).reverse());
  renderCharts(history);
  await followLogs(id, !open);
}

// ---- routing and polling ------------------------------------------------------------------

function parseRoute() {
  const h = location.hash || "#/";
  const m = h.match(/^#\/jobs\/(\d+)$/);
  if (m) return { name: "job", id: Number(m[1]) };
  if (h === "#/nodes") return { name: "nodes", id: 0 };
  if (h === "#/services") return { name: "services", id: 0 };
  return { name: "queue", id: 0 };
}

async function refresh() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(TOKEN_KEY)) { showOnly("login"); return; }
  try {
    if (!me) {
      me = await api("GET", "/whoami");
      $("who").textContent = me.user + (me.admin ? " (admin)" : "");
      $("logout").hidden = false;
    }
    if (view.name === "job") await renderJob(view.id);
    else if (view.name === "nodes") await renderNodes();
    else if (view.name === "services") await renderServices();
    else await renderQueue();
    showOnly(view.name);
    showBanner("");
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      me = null;
      showOnly("login");
    } else if (e.status === 403 || e.status === 404) {
      showOnly("");
    }
    showBanner(e.message);
  }
  timer = setTimeout(refresh, POLL_MS);
}

function route() {
  const next = parseRoute();
  if (next.name !== view.name || next.id !== view.id) {
    for (const c of Object.values(charts)) if (c) c.destroy();
    charts = {};
    logState = { job: 0, after: 0 };
  }
  view = next;
  refresh();
}

async function act(path, body) {
  try {
    await api("POST", path, body);
    refresh();
  } catch (e) {
    showBanner(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    me = null;
    refresh();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    $("who").textContent = "";
    $("logout").hidden = true;
    refresh();
  });
  $("show-finished").addEventListener("change", refresh);
  $("cancel-btn").addEventListener("click", () => {
    if (confirm(`Cancel job ${view.id}?`)) act(`/jobs/${view.id}/cancel`);
  });
  $("hold-btn").addEventListener("click", () => act(`/jobs/${view.id}/hold`));
  $("release-btn").addEventListener("click", () => act(`/jobs/${view.id}/release`));
  window.addEventListener("hashchange", route);
  route();
});
