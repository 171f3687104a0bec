/* kappa dashboard: a single-page app over the jobmanager's REST API (docs/rest.md), no
 * libraries, no network beyond this jobmanager. Hash routes: #/ overview, #/job/<jid>/<tab>,
 * #/taskmanagers, #/tm/<id>, #/jobmanager. Every view polls at /config's refresh-interval
 * (2 s) by redrawing from fresh JSON; records/s are derived here from two successive readings of
 * the counters. Everything shown goes through esc() or textContent: job names, exception
 * messages and logs are data, never markup. See docs/dashboard.md. */
'use strict';

const main = document.getElementById('main');
const statusEl = document.getElementById('status');
const esc = (v) => String(v === null || v === undefined ? '' : v)
  .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const rate = (r) => (r === null || r === undefined ? '–' : r >= 100 ? fmt(Math.round(r)) : r.toFixed(1));
const time = (ms) => (ms > 0 ? new Date(ms).toISOString().replace('T', ' ').replace(/\..*/, '') : '–');
const dur = (ms) => {
  if (!(ms >= 0)) return '–';
  const s = Math.floor(ms / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
    : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
};
const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
const badge = (s) => `<span class="badge s-${esc(s)}">${esc(s)}</span>`;
const mib = (b) => (b ? `${(b / 1048576).toFixed(1)} MiB` : '–');
const wm = (ms) => (ms === null || ms === undefined ? '–' : time(ms));

let refreshMs = 2000;
let timer = null;
let generation = 0; /* a redraw of an older route is dropped */
const samples = {}; /* jid -> {t, attempt, tasks: {tid: {in, out}}} for the rates */
const ui = { selected: null, confirmCancel: false, ckpt: null };

async function api(path, opts) {
  const r = await fetch(path, opts);
  const ct = r.headers.get('content-type') || '';
  const body = ct.includes('json') ? await r.json() : await r.text();
  return { status: r.status, ok: r.ok, body };
}

function errText(res) {
  const e = res.body && res.body.errors;
  return Array.isArray(e) ? e.join('; ') : `HTTP ${res.status}`;
}

function setNav(active) {
  const links = [['#/', 'Overview'], ['#/taskmanagers', 'Task managers'], ['#/jobmanager', 'Job manager']];
  document.getElementById('nav').innerHTML = links
    .map(([h, t]) => `<a href="${h}"${h === active ? ' class="active"' : ''}>${t}</a>`).join('');
}

/* --- overview --- */

async function overview() {
  setNav('#/');
  const [ov, jobs, tms] = await Promise.all([api('/overview'), api('/jobs/overview'), api('/taskmanagers')]);
  const o = ov.body;
  const cards = [['Task managers', o.taskmanagers], ['Slots', o['slots-total']], ['Free slots', o['slots-available']],
    ['Running jobs', o['jobs-running']], ['Finished', o['jobs-finished']], ['Cancelled', o['jobs-cancelled']],
    ['Failed', o['jobs-failed']]];
  const rows = jobs.body.jobs.slice().reverse().map((j) => `<tr class="link" data-href="#/job/${esc(j.jid)}">
      <td>${esc(j.name)}</td><td>${badge(j.state)}</td><td>${time(j['start-time'])}</td><td>${dur(j.duration)}</td>
      <td class="num">${j.parallelism}</td><td class="num">${j.tasks.running}/${j.tasks.total}</td>
      <td class="num">${j.attempt}</td><td><code>${esc(j.jid.slice(0, 8))}</code></td></tr>`).join('');
  return `<h1>Cluster</h1><div class="cards">${cards.map(([k, v]) => `<div class="card"><div class="v">${fmt(v)}</div><div class="k">${k}</div></div>`).join('')}</div>
    <h2>Jobs</h2><div class="panel">${rows ? `<table id="jobs"><tr><th>Name</th><th>State</th><th>Started</th><th>Duration</th>
      <th class="num">Parallelism</th><th class="num">Subtasks running</th><th class="num">Attempt</th><th>Id</th></tr>${rows}</table>`
    : '<div class="empty">No jobs yet: submit one with <code>kappa submit</code>.</div>'}</div>
    <h2>Task managers</h2>${tmTable(tms.body.taskmanagers)}`;
}

function tmTable(tms) {
  if (!tms.length) return '<div class="panel empty">No task managers registered.</div>';
  const now = Date.now();
  return `<div class="panel"><table id="tms"><tr><th>Id</th><th>Data address</th><th class="num">Slots</th><th class="num">Free</th>
    <th class="num">Heartbeat age</th><th class="num">RSS</th><th class="num">CPU</th><th>Build</th></tr>${tms.map((t) => `<tr class="link" data-href="#/tm/${encodeURIComponent(t.id)}">
    <td>${esc(t.id)}</td><td>${esc(t.data_address)}</td><td class="num">${t.slots_total}</td><td class="num">${t.slots_free}</td>
    <td class="num">${dur(Math.max(0, now - t.last_heartbeat_ms))}</td><td class="num">${mib(t.rss_bytes)}</td>
    <td class="num">${tmCpu({ id: t.id, 'cpu-seconds': t.cpu_seconds })}</td><td>${esc(t.build)}</td></tr>`).join('')}</table></div>`;
}

/* --- job --- */

/* Sums a task's subtask counters; null while no subtask reported. */
function taskTotals(task) {
  let rin = 0, rout = 0, wmMin = null, any = false;
  for (const s of task.subtasks) {
    if (!s.metrics) continue;
    any = true;
    rin += s.metrics.records_in;
    rout += s.metrics.records_out;
    const w = s.metrics.watermark_ms;
    if (w !== null && w !== undefined && w > -9e15) wmMin = wmMin === null ? w : Math.min(wmMin, w);
  }
  return any ? { in: rin, out: rout, wm: wmMin } : null;
}

/* records/s per task from this reading and the previous one of the same attempt (a reading
 * less than 0.5 s after the last, e.g. a redraw on a click, reuses the last rates). */
function rates(job) {
  const now = performance.now();
  const prev = samples[job.jid];
  if (prev && prev.attempt === job.attempt && now - prev.t < 500) return prev.rates;
  const cur = { t: now, attempt: job.attempt, tasks: {}, rates: {} };
  for (const t of job.tasks) {
    const tot = taskTotals(t);
    if (!tot) continue;
    cur.tasks[t.id] = tot;
    const p = prev && prev.attempt === job.attempt && prev.tasks[t.id];
    const dt = p ? (now - prev.t) / 1000 : 0;
    cur.rates[t.id] = p && tot.in >= p.in && tot.out >= p.out
      ? { in: (tot.in - p.in) / dt, out: (tot.out - p.out) / dt } : null;
  }
  samples[job.jid] = cur;
  return cur.rates;
}

/* Columns by distance from the sources; the plan is a forest (one upstream per task). */
function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = (n, seen = 0) => (!n.inputs.length || seen > nodes.length ? 0
    : 1 + depth(byId.get(n.inputs[0].id) || { inputs: [] }, seen + 1));
  const cols = [];
  for (const n of nodes) {
    const d = depth(n);
    (cols[d] = cols[d] || []).push(n);
  }
  const pos = new Map();
  const W = 230, H = 96, GX = 90, GY = 28;
  cols.forEach((col, c) => col.forEach((n, r) => pos.set(n.id, { x: 20 + c * (W + GX), y: 20 + r * (H + GY), w: W, h: H })));
  const rows = Math.max(...cols.map((c) => c.length));
  return { pos, width: 40 + cols.length * (W + GX) - GX, height: 40 + rows * (H + GY) - GY };
}

function dagSvg(plan, job, rts, bp) {
  const { pos, width, height } = layout(plan.nodes);
  const tasks = new Map(job.tasks.map((t) => [t.id, t]));
  let edges = '', verts = '';
  for (const n of plan.nodes) {
    const p = pos.get(n.id);
    for (const i of n.inputs) {
      const u = pos.get(i.id);
      if (!u) continue;
      const x1 = u.x + u.w, y1 = u.y + u.h / 2, x2 = p.x, y2 = p.y + p.h / 2, mx = (x1 + x2) / 2;
      edges += `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}"/>
        <text class="elabel" x="${mx}" y="${(y1 + y2) / 2 - 6}" text-anchor="middle">${esc(i.ship_strategy)}</text>`;
    }
    const task = tasks.get(n.id);
    const tot = task ? taskTotals(task) : null;
    const r = rts[n.id];
    const level = bp[n.id] || 'na';
    const ops = (n.operators || []).map((o) => o.name).join(' → ');
    verts += `<g class="vx${ui.selected === n.id ? ' sel' : ''}" data-vertex="${n.id}">
      <rect class="bp-${esc(level)}" x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" rx="8"/>
      <text class="t" x="${p.x + 10}" y="${p.y + 19}">${esc(clip(n.operator, 24))} <tspan class="m">×${n.parallelism}</tspan></text>
      <text class="m" x="${p.x + 10}" y="${p.y + 35}">${esc(clip(ops, 34))}</text>
      <title>${esc(n.operator)}: ${esc(ops)}</title>
      <text x="${p.x + 10}" y="${p.y + 54}">in ${rate(r && r.in)}/s · out ${rate(r && r.out)}/s</text>
      <text class="m" x="${p.x + 10}" y="${p.y + 70}">${fmt(tot && tot.in)} in · ${fmt(tot && tot.out)} out</text>
      <text class="m" x="${p.x + 10}" y="${p.y + 86}">wm ${esc(wm(tot && tot.wm))}</text></g>`;
  }
  return `<svg class="dag" id="dag" viewBox="0 0 ${width} ${height}" height="${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0 L10,5 L0,10 z" fill="#9aa3b5"/></marker></defs>${edges}${verts}</svg>`;
}

function subtaskTable(task, vsubs) {
  const full = new Map((vsubs || []).map((v) => [v.subtask, v.metrics || {}]));
  return `<h2>${esc(task.name)} — subtasks</h2><div class="panel"><table id="subtasks"><tr><th>#</th><th>State</th><th>Task manager</th>
    <th class="num">Records in</th><th class="num">Records out</th><th class="num">Bytes in</th><th class="num">Bytes out</th>
    <th class="num">State</th><th class="num">Busy</th><th class="num">Backpressured</th><th class="num">Idle</th><th>Watermark</th></tr>${task.subtasks.map((s) => {
    const m = full.get(s.subtask) || {};
    return `<tr><td>${s.subtask}</td><td>${badge(s.state)}</td><td>${esc(s.taskmanager || '–')}</td>
    <td class="num">${fmt(s.metrics && s.metrics.records_in)}</td><td class="num">${fmt(s.metrics && s.metrics.records_out)}</td>
    <td class="num">${fmt(m['read-bytes'])}</td><td class="num">${fmt(m['write-bytes'])}</td><td class="num">${m['state-size'] ? mib(m['state-size']) : '–'}</td><td class="num">${pct(m['busy-ratio'])}</td>
    <td class="num">${pct(m['backpressured-ratio'])}</td><td class="num">${pct(m['idle-ratio'])}</td>
    <td>${esc(wm(s.metrics && s.metrics.watermark_ms > -9e15 ? s.metrics.watermark_ms : null))}</td></tr>`;
  }).join('')}</table></div>`;
}

const plans = {};

/* Flink's levels of the share of time blocked on exchange credits (rest_jobs.c, bp_level). */
const bpLevel = (r) => (r <= 0.1 ? 'ok' : r <= 0.5 ? 'low' : 'high');
const pct = (r) => (r === null || r === undefined ? '–' : `${Math.round(r * 100)} %`);
const lagHist = {}; /* jid -> {attempt, t: [ms], parts: {partition: [lag]}}, the last 90 readings */
const sinkPrev = {}; /* jid -> {t, acked} for the sink's documents/s */

/* Every vertex's subtasks with their full metrics (GET /jobs/:id/vertices/:vid). */
async function vertices(job, plan) {
  const out = {};
  await Promise.all(plan.nodes.map(async (n) => {
    const v = await api(`/jobs/${job.jid}/vertices/${n.id}`);
    if (v.ok) out[n.id] = v.body.subtasks;
  }));
  return out;
}

/* The vertex's worst subtask backpressure level, or undefined before any ratio. */
function vertexLevel(subs) {
  const rs = (subs || []).map((s) => s.metrics && s.metrics['backpressured-ratio']).filter((r) => r !== null && r !== undefined);
  return rs.length ? bpLevel(Math.max(...rs)) : undefined;
}

/* The source partitions of every subtask: [{vertex, subtask, partition, offset, high, lag, watermark}]. */
function partitionRows(vx) {
  const rows = [];
  for (const [vid, subs] of Object.entries(vx)) {
    for (const s of subs) {
      const src = s.metrics && s.metrics.source;
      if (!src || !src.reader || !src.reader.partitions) continue;
      const wms = new Map((src.watermarks || []).map((w) => [w.partition, w.watermark]));
      for (const p of src.reader.partitions) rows.push({ vertex: vid, subtask: s.subtask, ...p, watermark: wms.get(p.partition) });
    }
  }
  return rows.sort((a, b) => a.partition - b.partition);
}

function lagChart(job, rows) {
  let h = lagHist[job.jid];
  if (!h || h.attempt !== job.attempt) h = lagHist[job.jid] = { attempt: job.attempt, t: [], parts: {} };
  h.t.push(Date.now());
  for (const r of rows) (h.parts[r.partition] = h.parts[r.partition] || []).length = h.t.length - 1;
  for (const r of rows) h.parts[r.partition][h.t.length - 1] = r.lag;
  if (h.t.length > 90) { h.t.shift(); for (const k in h.parts) h.parts[k].shift(); }
  const colors = ['#3658d4', '#d98c00', '#1f9d55', '#d23c3c', '#8a4fd1', '#0f8b8d', '#b5487a', '#6b7385'];
  const keys = Object.keys(h.parts).map(Number).sort((a, b) => a - b);
  const vmax = Math.max(1, ...keys.flatMap((k) => h.parts[k].filter((v) => v !== undefined)));
  const n = h.t.length;
  const x = (i) => 50 + (n > 1 ? (i / (n - 1)) * 930 : 465);
  const y = (v) => 165 - (v / vmax) * 150;
  const lines = keys.map((k, j) => {
    const pts = h.parts[k].map((v, i) => (v === undefined ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    return `<polyline class="lag" data-partition="${k}" fill="none" stroke="${colors[j % colors.length]}" stroke-width="2" points="${pts.join(' ')}"/>`;
  }).join('');
  const legend = keys.map((k, j) => `<span><i class="sw${j % colors.length}"></i>partition ${k}</span>`).join('');
  return `<div class="legend">${legend}</div><svg class="chart" id="lagchart" viewBox="0 0 1000 180" preserveAspectRatio="none">
    ${lines}<text x="4" y="12">lag, max ${fmt(vmax)} records</text><text x="50" y="178">${esc(time(h.t[0]))}</text>
    <text x="980" y="178" text-anchor="end">${esc(time(h.t[n - 1]))}</text></svg>`;
}

function kafkaPanel(job, vx) {
  const rows = partitionRows(vx);
  if (!rows.length) return '';
  return `<h2>Kafka lag per partition</h2>${lagChart(job, rows)}<div class="panel"><table id="partitions"><tr><th class="num">Partition</th>
    <th>Subtask</th><th class="num">Offset</th><th class="num">End offset</th><th class="num">Lag</th><th>Carried watermark</th></tr>
    ${rows.map((r) => `<tr><td class="num">${r.partition}</td><td>${esc(r.vertex)}.${r.subtask}</td><td class="num">${fmt(r.offset)}</td>
    <td class="num">${r.high >= 0 ? fmt(r.high) : '–'}</td><td class="num">${fmt(r.lag)}</td><td>${esc(wm(r.watermark))}</td></tr>`).join('')}</table></div>`;
}

/* The Elasticsearch sinks (sink stats with "bulks"), summed over their subtasks. */
function esPanel(job, vx) {
  const st = Object.values(vx).flat().map((s) => s.metrics && s.metrics.sink).filter((k) => k && k.bulks !== undefined);
  if (!st.length) return '';
  const sum = (k) => st.reduce((a, x) => a + (x[k] || 0), 0);
  const acked = sum('acked'), now = performance.now(), prev = sinkPrev[job.jid];
  const dps = prev && prev.attempt === job.attempt && now > prev.t && acked >= prev.acked ? ((acked - prev.acked) * 1000) / (now - prev.t) : null;
  if (!prev || now - prev.t >= 500) sinkPrev[job.jid] = { t: now, acked, attempt: job.attempt };
  const ms = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)} ms`);
  const cards = [['Documents/s', rate(dps)], ['Documents', fmt(acked)], ['Bulk latency p50', ms(Math.max(...st.map((x) => x.bulk_latency_ms_p50)))],
    ['Bulk latency p99', ms(Math.max(...st.map((x) => x.bulk_latency_ms_p99)))], ['Bulks', fmt(sum('bulks'))], ['Retries', fmt(sum('retries'))],
    ['Stale', fmt(sum('stale'))], ['Failed', fmt(sum('failed'))], ['Dead-lettered', fmt(sum('dead_lettered'))]];
  return `<h2>Elasticsearch sink</h2><div class="cards" id="essink">${cards.map(([k, v]) => `<div class="card"><div class="v">${v}</div><div class="k">${k}</div></div>`).join('')}</div>
    <p class="note">Summed over the sink's ${st.length} subtask(s); latency is the slowest subtask's. Stale: documents refused as older than the stored version.</p>`;
}

async function graphTab(job) {
  if (!plans[job.jid]) {
    const p = await api(`/jobs/${job.jid}/plan`);
    if (!p.ok) return `<div class="err">${esc(errText(p))}</div>`;
    plans[job.jid] = p.body.plan;
  }
  const plan = plans[job.jid];
  const vx = await vertices(job, plan);
  const bp = {};
  for (const n of plan.nodes) { const l = vertexLevel(vx[n.id]); if (l) bp[n.id] = l; }
  const rts = ['FINISHED', 'FAILED', 'CANCELED'].includes(job.state) ? {} : rates(job); /* nothing flows */
  if (ui.selected === null && plan.nodes.length) ui.selected = plan.nodes[0].id;
  const task = job.tasks.find((t) => t.id === ui.selected);
  return `<div class="legend"><span><i class="ok"></i>ok</span><span><i class="low"></i>low</span><span><i class="high"></i>high backpressure</span>
    <span><i class="na"></i>not measured yet</span></div>
    ${dagSvg(plan, job, rts, bp)}<p class="note">Click a vertex for its subtasks. Rates come from two readings
    ${refreshMs / 1000} s apart; counters are the taskmanagers' latest reports (sent every heartbeat). Backpressure is the
    worst subtask's share of time blocked on exchange credits: ok up to 10 %, low up to 50 %, high above.</p>
    ${task ? subtaskTable(task, vx[task.id]) : ''}${kafkaPanel(job, vx)}${esPanel(job, vx)}`;
}

async function exceptionsTab(job) {
  const e = await api(`/jobs/${job.jid}/exceptions`);
  if (!e.ok) return `<div class="err">${esc(errText(e))}</div>`;
  const all = e.body['all-exceptions'];
  if (!all.length) return '<div class="panel empty" id="exceptions">No exceptions: the job never failed.</div>';
  return `<div class="panel"><table id="exceptions"><tr><th>Time</th><th>Transition</th><th>Exception</th></tr>${all.map((x) => `<tr>
    <td>${time(x.timestamp)}</td><td>${esc(x.from)} → ${esc(x.to)}</td><td class="wrap">${esc(x.exception)}</td></tr>`).join('')}</table></div>`;
}

/* Bars of a history: one per checkpoint, height by value. */
function barChart(items, value, label, cls) {
  const vals = items.map(value).map((v) => (v > 0 ? v : 0));
  const max = Math.max(1, ...vals), n = Math.max(1, vals.length), w = Math.min(60, 1000 / n);
  return `<svg class="chart" viewBox="0 0 1000 180" preserveAspectRatio="none">${vals.map((v, i) => {
    const h = (v / max) * 150;
    return `<rect class="${cls}" x="${i * w + 1}" y="${165 - h}" width="${Math.max(1, w - 2)}" height="${h}"/>`;
  }).join('')}<text x="4" y="12">${esc(label)} (max ${fmt(max)})</text></svg>`;
}

async function checkpointsTab(job) {
  const c = await api(`/jobs/${job.jid}/checkpoints`);
  if (c.status === 404 && !(c.body && c.body.errors && /no job/.test(errText(c)))) {
    return '<div class="panel empty" id="checkpoints">No checkpoints: this jobmanager does not report checkpoint statistics for the job.</div>';
  }
  if (!c.ok) return `<div class="err">${esc(errText(c))}</div>`;
  const hist = (c.body.history || []).slice().reverse();
  const counts = c.body.counts || {};
  if (!hist.length) return `<div class="panel empty" id="checkpoints">No checkpoints yet${counts.total !== undefined ? ` (${fmt(counts.total)} triggered)` : ''}.</div>`;
  return `<div class="cards">${Object.entries(counts).map(([k, v]) => `<div class="card"><div class="v">${fmt(v)}</div><div class="k">${esc(k)}</div></div>`).join('')}</div>
    <h2>Duration (ms) and size (bytes)</h2>${barChart(hist, (h) => h.end_to_end_duration, 'end-to-end duration ms', 'bar')}
    ${barChart(hist, (h) => h.state_size, 'state size bytes', 'bar2')}
    <h2>History</h2><div class="panel"><table id="checkpoints"><tr><th>Id</th><th>Status</th><th>Triggered</th>
    <th class="num">Duration</th><th class="num">Size</th><th class="num">Acknowledged</th></tr>${hist.slice().reverse().map((h) => `<tr
    class="link" data-ckpt="${esc(h.id)}">
    <td>${esc(h.id)}</td><td>${badge(h.status)}</td><td>${time(h.trigger_timestamp)}</td><td class="num">${fmt(h.end_to_end_duration)} ms</td>
    <td class="num">${fmt(h.state_size)}</td><td class="num">${fmt(h.num_acknowledged_subtasks)}/${fmt(h.num_subtasks)}</td></tr>`).join('')}</table></div>
    ${await checkpointDetail(job, ui.ckpt !== null ? ui.ckpt : hist[hist.length - 1].id)}`;
}

/* Per task and subtask of one checkpoint (GET /jobs/:id/checkpoints/details/:cid). */
async function checkpointDetail(job, cid) {
  const d = await api(`/jobs/${job.jid}/checkpoints/details/${encodeURIComponent(cid)}`);
  if (!d.ok) return `<div class="note">${esc(errText(d))}</div>`;
  const names = new Map(job.tasks.map((t) => [String(t.id), t.name]));
  const ms = (v) => (v === null || v === undefined ? '–' : `${Number(v).toFixed(1)} ms`);
  const rows = Object.values(d.body.tasks || {}).flatMap((t) => (t.subtasks || []).map((s) => `<tr>
    <td>${esc(names.get(String(t.id)) || t.id)}</td><td>${esc(s.index)}</td><td>${badge(String(s.status).toUpperCase())}</td>
    <td class="num">${fmt(s.end_to_end_duration)} ms</td><td class="num">${fmt(s.state_size)}</td>
    <td class="num">${ms(s.checkpoint && s.checkpoint.sync)}</td><td class="num">${ms(s.checkpoint && s.checkpoint.async)}</td>
    <td class="num">${ms(s.alignment && s.alignment.duration)}</td></tr>`)).join('');
  return `<h2>Checkpoint ${esc(cid)} per subtask</h2><div class="panel">${rows ? `<table id="ckpt-detail"><tr><th>Task</th>
    <th>#</th><th>Status</th><th class="num">End to end</th><th class="num">State size</th><th class="num">Sync</th>
    <th class="num">Async</th><th class="num">Alignment</th></tr>${rows}</table>` : '<div class="empty">No subtask has acknowledged it yet.</div>'}</div>`;
}

/* Lines of the top items' hourly values (the five largest) over a shared time axis. */
function lineChart(items) {
  const colors = ['#3658d4', '#d98c00', '#1f9d55', '#d23c3c', '#8a4fd1'];
  const series = items.slice(0, 5);
  const pts = series.flatMap((it) => it.hourly);
  if (!pts.length) return '';
  const t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
  const vmax = Math.max(1, ...pts.map((p) => p[1]));
  const x = (t) => 50 + (t1 > t0 ? ((t - t0) / (t1 - t0)) * 930 : 465);
  const y = (v) => 165 - (v / vmax) * 150;
  const lines = series.map((it, i) => `<polyline fill="none" stroke="${colors[i]}" stroke-width="2"
    points="${it.hourly.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')}"/>
    ${it.hourly.map((p) => `<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3" fill="${colors[i]}"/>`).join('')}`).join('');
  const legend = series.map((it, i) => `<span><i class="sw${i}"></i>${esc(it.key)}</span>`).join('');
  return `<div class="legend">${legend}</div><svg class="chart" viewBox="0 0 1000 180" preserveAspectRatio="none">
    ${lines}<text x="4" y="12">max ${fmt(vmax)} per hour</text><text x="50" y="178">${esc(time(t0))}</text>
    <text x="980" y="178" text-anchor="end">${esc(time(t1))}</text></svg>`;
}

async function resultsTab(job) {
  const r = await api(`/jobs/${job.jid}/results?top=10&hours=48`);
  if (!r.ok) return `<div class="panel empty" id="results">No results view: ${esc(errText(r))}</div>`;
  const d = r.body;
  const rows = d.items.map((it) => `<tr><td>${esc(it.key)}</td><td class="num">${fmt(it.total)}</td>
    <td class="num">${fmt(it.hourly.length ? it.hourly[it.hourly.length - 1][1] : null)}</td></tr>`).join('');
  return `<p class="note">Index <code>${esc(d.index)}</code>: ${fmt(d.documents)} documents in the last ${d.hours} h before
    ${esc(time(d.latest))}; the top ${d.items.length} by the sum of <code>${esc(d.value)}</code> per
    <code>${esc(d.key)}</code>, per hour of <code>${esc(d.time)}</code>.</p>${lineChart(d.items)}
    <h2>Top items</h2><div class="panel"><table id="results"><tr><th>${esc(d.key)}</th><th class="num">Total</th>
    <th class="num">Last hour</th></tr>${rows}</table></div>`;
}

async function configTab(job) {
  const rs = job['restart-strategy'] || {};
  const plan = plans[job.jid];
  const rows = [['Job id', job.jid], ['Name', job.name], ['Parallelism (slots)', job.parallelism], ['Attempt', job.attempt],
    ['Restart strategy', `${rs.kind} (${rs.attempts} attempts, ${rs['delay-ms']} ms delay)`],
    ['Checkpoint interval', plan ? `${plan.checkpoint_interval_ms} ms` : '–'], ['Plugin sha256', job.plugin_sha256],
    ['Graph hash', job.graph_hash], ['Replaces', job.replaces || '–'], ['Waiting reason', job.waiting_reason || '–']];
  return `<div class="panel"><table id="jobconfig">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td><code>${esc(v)}</code></td></tr>`).join('')}</table></div>`;
}

/* A mutating request with the token when one is stored; asks for it once on a 401. */
async function mutate(path, opts, what, asked) {
  const headers = Object.assign({}, opts.headers);
  const token = sessionStorage.getItem('kappa-token');
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await api(path, Object.assign({}, opts, { headers }));
  if (r.status === 401 && !asked) {
    const t = window.prompt(`This jobmanager needs its token to ${what}:`);
    if (t) { sessionStorage.setItem('kappa-token', t); return mutate(path, opts, what, true); }
  }
  return r;
}

async function cancelJob(jid) {
  const r = await mutate(`/jobs/${jid}?mode=cancel`, { method: 'PATCH' }, 'cancel');
  statusEl.textContent = r.ok ? 'cancel requested' : `cancel: ${errText(r)}`;
}

/* POST /jobs/:id/savepoints into a directory the person names (absolute, new or empty). */
async function savepointJob(jid) {
  const dir = window.prompt('Savepoint into which directory on the jobmanager\'s host (absolute, new or empty)?');
  if (!dir) return;
  const r = await mutate(`/jobs/${jid}/savepoints`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ 'target-directory': dir, 'cancel-job': false }),
  }, 'take a savepoint');
  statusEl.textContent = r.ok ? `savepoint requested (request ${r.body['request-id']}) into ${dir}`
    : `savepoint: ${errText(r)}`;
}

/* The blue/green reprocessing the job takes part in (docs/bluegreen.md): both versions, v2's
 * lag and watermark against v1's, the estimate, the step of the cut-over (bg.step, in words:
 * v2's checkpoint, v1's stop-with-savepoint, v1's savepoint) and the transitions. */
function bluegreenPanel(bg) {
  if (!bg) return '';
  const sink = (bg.sinks || [])[0] || {};
  const ver = (k) => {
    const v = bg[k];
    if (!v) return '';
    return `<tr class="link" data-href="#/job/${esc(v.id)}"><td>${k}</td><td>${esc(v.name)}</td><td>${badge(v.state)}</td>
      <td class="num">${v.records_in === null ? '–' : fmt(v.records_in)}</td><td>${v.watermark_ms === null ? '–' : esc(new Date(v.watermark_ms).toISOString())}</td>
      <td class="num">${v.kafka_lag === null ? '–' : fmt(v.kafka_lag)}</td></tr>`;
  };
  const eta = bg.eta_ms === null || bg.eta_ms === undefined ? '' : ` · cut-over in about ${dur(bg.eta_ms)}`;
  return `<h2>Blue/green reprocessing <span class="note">this job is ${esc(bg.role)} · ${esc(bg.phase)}${eta}</span></h2>
    <div class="panel" id="bluegreen">${bg.step ? `<p id="bluegreen-step">${esc(bg.step)}</p>` : ''}<p class="note">alias es:${esc(sink.alias || '?')} · old index ${esc(sink.old_index || '–')} · new index ${esc(sink.new_index || '–')}</p>
    ${bg.v1 || bg.v2 ? `<table><tr><th></th><th>Job</th><th>State</th><th>Records in</th><th>Watermark</th><th>Kafka lag</th></tr>${ver('v1')}${ver('v2')}</table>` : ''}
    <table><tr><th>Time</th><th>From</th><th>To</th><th>Message</th></tr>${(bg.transitions || []).map((t) => `<tr><td>${esc(new Date(t.time).toLocaleTimeString('en-GB'))}</td>
    <td>${esc(t.from)}</td><td>${esc(t.to)}</td><td>${esc(t.message)}</td></tr>`).join('')}</table></div>`;
}

async function jobView(jid, tab) {
  setNav('');
  const r = await api(`/jobs/${jid}`);
  if (!r.ok) return `<div class="err">${esc(errText(r))}</div>`;
  const job = r.body;
  const tabs = [['graph', 'Graph'], ['exceptions', 'Exceptions'], ['checkpoints', 'Checkpoints'], ['results', 'Results'],
    ['config', 'Configuration']];
  const views = { graph: graphTab, exceptions: exceptionsTab, checkpoints: checkpointsTab, results: resultsTab, config: configTab };
  const body = await (views[tab] || graphTab)(job);
  const final = ['FINISHED', 'FAILED', 'CANCELED'].includes(job.state);
  const end = job['end-time'] > 0 ? job['end-time'] : Date.now();
  return `<h1>${esc(job.name)} ${badge(job.state)} <span class="note">${dur(end - job['start-time'])} · attempt ${job.attempt}</span>
    <span class="grow"></span><button id="savepoint" data-jid="${esc(job.jid)}"${job.state !== 'RUNNING' ? ' disabled' : ''}>Savepoint</button>
    <button id="cancel" data-jid="${esc(job.jid)}"${final ? ' disabled' : ''}>${ui.confirmCancel ? 'Confirm cancel' : 'Cancel job'}</button></h1>
    ${bluegreenPanel(job.bluegreen)}
    <div class="tabs">${tabs.map(([k, t]) => `<a href="#/job/${esc(job.jid)}/${k}"${k === (tab || 'graph') ? ' class="active"' : ''}>${t}</a>`).join('')}</div>${body}`;
}

/* --- task managers and the jobmanager --- */

async function tmsView() {
  setNav('#/taskmanagers');
  const r = await api('/taskmanagers');
  return `<h1>Task managers</h1>${tmTable(r.body.taskmanagers)}
    <p class="note">RSS and CPU come with each heartbeat; CPU is the share of one core between two readings.
    Click a task manager for its subtasks.</p>`;
}

const cpuPrev = {}; /* tm id -> {t, cpu} for the CPU share between two readings */
function tmCpu(tm) {
  const c = tm['cpu-seconds'];
  if (c === null || c === undefined) return '–';
  const now = performance.now(), p = cpuPrev[tm.id];
  const share = p && now - p.t >= 500 && c >= p.cpu ? ((c - p.cpu) * 1000) / (now - p.t) : null;
  if (!p || now - p.t >= 500) cpuPrev[tm.id] = { t: now, cpu: c, share };
  const s = share !== null ? share : p && p.share;
  return s === null || s === undefined ? `${c.toFixed(1)} s` : `${(s * 100).toFixed(1)} %`;
}

async function tmView(id) {
  setNav('#/taskmanagers');
  const [t, m, l] = await Promise.all([api(`/taskmanagers/${id}`), api(`/taskmanagers/${id}/metrics`),
    api(`/taskmanagers/${id}/logs?lines=200`)]);
  if (!t.ok) return `<div class="err">${esc(errText(t))}</div>`;
  const tm = t.body;
  const metrics = m.ok ? m.body.metrics.map((x) => `<tr><td>${esc(x.id)}</td><td class="num">${x.value === null ? 'not reported' : fmt(x.value)}</td></tr>`).join('') : '';
  return `<h1>${esc(tm.id)} ${badge(tm.alive ? 'RUNNING' : 'LOST')}</h1>
    <div class="cards"><div class="card"><div class="v">${tm.slotsNumber}</div><div class="k">Slots</div></div>
    <div class="card"><div class="v">${tm.freeSlots}</div><div class="k">Free</div></div>
    <div class="card"><div class="v">${dur(tm.timeSinceLastHeartbeat)}</div><div class="k">Heartbeat age</div></div>
    <div class="card" id="tmrss"><div class="v">${mib(tm['rss-bytes'])}</div><div class="k">RSS</div></div>
    <div class="card" id="tmcpu"><div class="v">${tmCpu(tm)}</div><div class="k">CPU (of one core)</div></div></div>
    <h2>Metrics</h2><div class="panel"><table>${metrics}</table></div>
    <h2>Subtasks</h2><div class="panel">${tm.subtasks.length ? `<table><tr><th>Job</th><th>Task</th><th>#</th><th>State</th></tr>${tm.subtasks.map((s) => `<tr class="link" data-href="#/job/${esc(s.jid)}">
    <td>${esc(s['job-name'])}</td><td>${s.task}</td><td>${s.subtask}</td><td>${badge(s.status)}</td></tr>`).join('')}</table>` : '<div class="empty">Nothing deployed.</div>'}</div>
    <h2>Log (last 200 lines, sent with its heartbeats)</h2>${l.ok ? `<pre class="log" id="tmlog">${esc(l.body)}</pre>` : `<div class="note">${esc(errText(l))}</div>`}`;
}

async function jmView() {
  setNav('#/jobmanager');
  const [c, l] = await Promise.all([api('/jobmanager/config'), api('/jobmanager/logs?lines=200')]);
  return `<h1>Job manager</h1><h2>Configuration</h2><div class="panel"><table id="jmconfig">${c.body.map((kv) => `<tr><th>${esc(kv.key)}</th><td><code>${esc(kv.value)}</code></td></tr>`).join('')}</table></div>
    <h2>Log (last 200 lines)</h2>${l.ok ? `<pre class="log" id="jmlog">${esc(l.body)}</pre>` : `<div class="note">${esc(errText(l))}</div>`}`;
}

/* --- routing and polling --- */

function route() {
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').map(decodeURIComponent);
  if (parts[0] === 'job' && parts[1]) return () => jobView(encodeURIComponent(parts[1]), parts[2] || 'graph');
  if (parts[0] === 'taskmanagers') return tmsView;
  if (parts[0] === 'tm' && parts[1]) return () => tmView(encodeURIComponent(parts[1]));
  if (parts[0] === 'jobmanager') return jmView;
  return overview;
}

async function draw() {
  clearTimeout(timer);
  const gen = ++generation;
  const scrollY = window.scrollY;
  try {
    const html = await route()();
    if (gen !== generation) return;
    main.innerHTML = html;
    window.scrollTo(0, scrollY);
    statusEl.textContent = `updated ${new Date().toLocaleTimeString('en-GB')}`;
    statusEl.className = '';
  } catch (e) {
    if (gen !== generation) return;
    statusEl.textContent = `jobmanager unreachable (${e.message}); retrying`;
    statusEl.className = 'err';
  }
  timer = setTimeout(draw, refreshMs);
}

main.addEventListener('click', (ev) => {
  const v = ev.target.closest('[data-vertex]');
  if (v) { ui.selected = Number(v.dataset.vertex); draw(); return; }
  const b = ev.target.closest('#cancel');
  if (b && !b.disabled) {
    if (!ui.confirmCancel) { ui.confirmCancel = true; b.textContent = 'Confirm cancel'; return; }
    ui.confirmCancel = false;
    b.disabled = true;
    cancelJob(b.dataset.jid).then(draw);
    return;
  }
  const sp = ev.target.closest('#savepoint');
  if (sp && !sp.disabled) { savepointJob(sp.dataset.jid).then(draw); return; }
  const ck = ev.target.closest('tr[data-ckpt]');
  if (ck) { ui.ckpt = ck.dataset.ckpt; draw(); return; }
  const row = ev.target.closest('tr[data-href]');
  if (row) location.hash = row.dataset.href;
});

window.addEventListener('hashchange', () => { ui.selected = null; ui.confirmCancel = false; ui.ckpt = null; draw(); });

api('/config').then((c) => {
  if (c.ok) refreshMs = c.body['refresh-interval'] || 2000;
}).catch(() => {}).finally(() => {
  const q = new URLSearchParams(location.search).get('refresh');
  if (q && Number(q) >= 250) refreshMs = Number(q); /* ?refresh=1000 for the 1 s measurement */
  draw();
});
