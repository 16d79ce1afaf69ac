"""The operator's page served at ``/`` by :mod:`edge.live`: plain HTML and one small script.

No build step and nothing fetched from elsewhere (devices are offline): the
page polls ``/stats.json`` (the latest frame's numbers) and
``/status.json?after=SEQ`` (staleness, new timeline points, recent events)
once a second, and shows ``/stream.mjpg``.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edgecam live</title>
<style>
:root{--bg:#0e1116;--panel:#171c23;--line:#2a323c;--text:#e6e9ec;--muted:#8b96a3;--ok:#2ea043;--warn:#d29922;
--bad:#da3633;--score:#58a6ff;--smooth:#f0f6fc;--event:rgba(218,54,51,.18)}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--text)}
header{display:flex;align-items:center;gap:.8em;padding:.55em 1em;background:var(--panel);border-bottom:1px solid var(--line)}
header strong{font-size:1.1em}
.pill{padding:.1em .7em;border-radius:1em;font-weight:600;font-size:.9em;background:var(--line)}
.pill.ok{background:var(--ok)}.pill.warn{background:var(--warn);color:#111}.pill.bad{background:var(--bad)}
.muted{color:var(--muted)}
#banner{display:none;padding:.7em 1em;background:var(--bad);color:#fff;font-size:1.35em;font-weight:700}
main{display:grid;grid-template-columns:minmax(0,2.2fr) minmax(17em,1fr);gap:1em;padding:1em}
@media (max-width:900px){main{grid-template-columns:1fr}}
section,aside{min-width:0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.7em;margin-bottom:1em}
#stream{display:block;width:100%;background:#000;border-radius:4px;min-height:120px}
canvas{display:block;width:100%;height:180px}
.legend{display:flex;flex-wrap:wrap;gap:1.1em;margin-top:.4em;color:var(--muted);font-size:.88em}
.key{display:inline-block;width:1.6em;height:0;vertical-align:middle;margin-right:.35em;border-top:2px solid}
h2{font-size:.95em;margin:0 0 .5em;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
dl{display:grid;grid-template-columns:auto 1fr;gap:.2em 1em;margin:0}
dt{color:var(--muted)}dd{margin:0;font-variant-numeric:tabular-nums;text-align:right}
dd.hot{color:var(--warn);font-weight:600}
#events{list-style:none;margin:0;padding:0}
#events li{display:flex;gap:.6em;align-items:center;padding:.4em 0;border-top:1px solid var(--line)}
#events li:first-child{border-top:0}
#events li.open{background:rgba(218,54,51,.12);border-radius:4px;padding-left:.3em}
#events img{width:96px;height:54px;object-fit:cover;border-radius:3px;background:#000;flex:none}
#events .what{font-weight:600}
</style></head>
<body>
<header><strong>edgecam</strong><span id="pill" class="pill">connecting</span>
<span id="label" class="muted"></span><span style="flex:1"></span><span id="clock" class="muted"></span></header>
<div id="banner" role="alert"></div>
<main>
<section>
<div class="card"><img id="stream" src="/stream.mjpg" alt="the annotated camera stream: heatmap, boxes and score"></div>
<div class="card"><h2>Score, last <span id="window">5 min</span></h2>
<canvas id="timeline" data-points="0" aria-label="score timeline"></canvas>
<div class="legend"><span><span class="key" style="border-color:var(--score)"></span>score</span>
<span><span class="key" style="border-color:var(--smooth);border-top-width:3px"></span>smoothed (drives events)</span>
<span><span class="key" style="border-color:var(--bad);border-top-style:dashed"></span>enter threshold</span>
<span><span class="key" style="border-color:var(--warn);border-top-style:dashed"></span>leave threshold</span>
<span><span class="key" style="border-color:var(--event);border-top-width:8px"></span>event open</span></div></div>
</section>
<aside>
<div class="card"><h2>Now</h2><dl>
<dt>frames per second</dt><dd id="fps">-</dd><dt>detect latency</dt><dd id="detect">-</dd>
<dt>frames</dt><dd id="frames">-</dd><dt>dropped (kept the newest)</dt><dd id="dropped">-</dd>
<dt>corrupt frames</dt><dd id="corrupt">-</dd><dt>source reconnects</dt><dd id="reconnects">-</dd>
<dt>events</dt><dd id="nevents">-</dd><dt>smoothed score</dt><dd id="smoothed">-</dd>
</dl></div>
<div class="card"><h2>Events</h2><ul id="events"><li class="muted">none yet</li></ul></div>
</aside>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const WINDOW_S = 300;
let seq = 0, points = [], serverNow = 0, enter = null, leave = null, polls = 0;
const fmt = (v, d) => (v === null || v === undefined || isNaN(v)) ? "-" : Number(v).toFixed(d);
const clock = epoch => new Date(epoch * 1000).toLocaleTimeString();
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

function banner(text) { const b = $("banner"); b.textContent = text || ""; b.style.display = text ? "block" : "none"; }
function pill(text, cls) { const p = $("pill"); p.textContent = text; p.className = "pill " + cls; }

function numbers(s) {
  $("fps").textContent = s.stale && s.age_s !== null ? fmt(s.fps, 1) + " (" + s.no_frame + ")" : fmt(s.fps, 1);
  $("fps").className = s.stale ? "hot" : "";
  $("detect").textContent = s.detect_ms === undefined ? "-" : fmt(s.detect_ms, 1) + " ms";
  for (const k of ["frames", "dropped", "corrupt", "reconnects"]) $(k).textContent = s[k] === undefined ? "-" : s[k];
  $("nevents").textContent = s.events === undefined ? "-" : s.events;
  $("smoothed").textContent = fmt(s.smoothed, 3);
  $("dropped").className = s.dropped ? "hot" : ""; $("corrupt").className = s.corrupt ? "hot" : "";
  $("reconnects").className = s.reconnects ? "hot" : "";
  $("label").textContent = s.label ? "tracking " + s.label : "";
}

function eventsList(events) {
  const ul = $("events");
  if (!events.length) { ul.innerHTML = '<li class="muted">none yet</li>'; return; }
  ul.innerHTML = events.slice().reverse().map(e => {
    const lasted = (e.end_time || serverEpoch()) - e.start_time;
    const when = e.open ? "open for " + fmt(lasted, 0) + " s" : "ended " + clock(e.end_time) + ", lasted " + fmt(lasted, 0) + " s";
    const img = e.snapshot ? '<img src="' + esc(e.snapshot) + '" alt="snapshot of event ' + e.id + '">' : "<img alt=''>";
    return '<li class="' + (e.open ? "open" : "") + '">' + img + '<div><div class="what">#' + e.id + " " + esc(e.label) +
      '</div><div class="muted">started ' + clock(e.start_time) + "<br>" + when + ", peak " + fmt(e.peak, 2) + "</div></div></li>";
  }).join("");
}

let epochOffset = 0;
function serverEpoch() { return Date.now() / 1000 + epochOffset; }

function draw() {
  const c = $("timeline"), dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth * dpr, h = c.clientHeight * dpr;
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  const g = c.getContext("2d"), pad = 28 * dpr;
  g.clearRect(0, 0, w, h);
  // the last WINDOW_S seconds; a page opened on a young run shows from its first point (one minute at least)
  const span = Math.min(WINDOW_S, Math.max(60, points.length ? serverNow - points[0][1] : 0));
  const step = span <= 90 ? 15 : span <= 180 ? 30 : 60;
  $("window").textContent = span >= 120 ? Math.round(span / 60) + " min" : Math.round(span) + " s";
  const x = t => pad + (w - pad) * (1 + (t - serverNow) / span), y = v => (h - 6 * dpr) - (h - 12 * dpr) * v;
  g.font = (11 * dpr) + "px sans-serif"; g.fillStyle = "#8b96a3"; g.strokeStyle = "#2a323c"; g.lineWidth = dpr;
  for (const v of [0, 0.5, 1]) { g.beginPath(); g.moveTo(pad, y(v)); g.lineTo(w, y(v)); g.stroke(); g.fillText(v.toFixed(1), 2, y(v) + 4 * dpr); }
  for (let k = 1; k * step < span; k++) { const xm = x(serverNow - k * step);
    g.fillText(step < 60 ? "-" + k * step + " s" : "-" + k + " min", xm - 14 * dpr, h - 1); }
  g.fillStyle = "rgba(218,54,51,.18)";
  for (let i = 1; i < points.length; i++) if (points[i][4]) g.fillRect(x(points[i - 1][1]), 0, x(points[i][1]) - x(points[i - 1][1]) + 1, h);
  const thr = (v, color) => { if (v === null) return; g.save(); g.setLineDash([6 * dpr, 4 * dpr]); g.strokeStyle = color;
    g.lineWidth = 1.5 * dpr; g.beginPath(); g.moveTo(pad, y(v)); g.lineTo(w, y(v)); g.stroke(); g.restore(); };
  thr(enter, "#da3633"); thr(leave, "#d29922");
  const line = (k, color, width) => { g.strokeStyle = color; g.lineWidth = width * dpr; g.beginPath(); let on = false;
    for (const p of points) { if (p[k] === null) { on = false; continue; } const px = x(p[1]), py = y(p[k]);
      if (on) g.lineTo(px, py); else g.moveTo(px, py); on = true; } g.stroke(); };
  line(2, "#58a6ff", 1.2); line(3, "#f0f6fc", 2.2);
  c.dataset.points = points.length;
}

function status(st) {
  serverNow = st.now; epochOffset = st.epoch - Date.now() / 1000;
  enter = st.enter; leave = st.leave; seq = st.seq;
  points = points.concat(st.points).filter(p => p[1] >= st.now - WINDOW_S);
  $("clock").textContent = "device time " + clock(st.epoch);
  if (st.age_s === null) { pill("waiting", "warn"); banner("Waiting for the first frame from the camera..."); }
  else if (st.stale) { pill("NO FRAME", "bad"); banner("No frame for " + fmt(st.age_s, 0) + " s - the camera may be lost (last frame at " + clock(st.epoch - st.age_s) + ")"); }
  else { pill("live", "ok"); banner(""); }
  eventsList(st.events);
  draw();
}

async function poll() {
  try {
    const [a, b] = await Promise.all([fetch('/stats.json', {cache: "no-store"}), fetch("/status.json?after=" + seq, {cache: "no-store"})]);
    if (!a.ok || !b.ok) throw new Error("HTTP " + a.status + " / " + b.status);
    numbers(await a.json()); status(await b.json()); polls++; document.body.dataset.polls = polls;
  } catch (e) {
    pill("offline", "bad"); banner("edgecam is not answering (" + e.message + "); retrying every second");
  }
}
$("stream").addEventListener("error", () => setTimeout(() => { $("stream").src = "/stream.mjpg?" + Date.now(); }, 2000));
window.addEventListener("resize", draw);
poll();setInterval(poll,1000);
</script></body></html>
"""
