// The live dashboard: reads /stats every second, turns counters into
// rates over the server's own monotonic clock (`uptime_ms`), and draws
// each shard's last minutes on a canvas of its own. No libraries.

const $ = (id) => document.getElementById(id);
const EVERY_MS = 1000;
const KEEP = 300; // samples: five minutes
const LANE_H = 54;

/** What a shard's chart shows, one lane each: [label, series...]; a series is [name, color, value(sample, prev)]. */
const LANES = [
  ["connections", ["ws", "#5aa9ff", (s) => s.connections_ws], ["resp", "#c792ea", (s) => s.connections_resp]],
  ["messages in/s", ["in", "#3fbf7f", rate("messages_in")]],
  ["deliveries/s", ["out", "#f0b429", rate("deliveries")]],
  ["bytes/s", ["in", "#5aa9ff", rate("bytes_in")], ["out", "#ff8f5a", rate("bytes_out")]],
  ["rooms homed", ["rooms", "#9ad16b", (s) => s.rooms_homed]],
  ["ring frames/s", ["sent", "#7fdbca", rate("ring_sent")], ["full", "#e5534b", rate("ring_full")]],
  ["closes, errors /s", ["slow", "#e5534b", rate("slow_consumer_closes")], ["proto", "#f07178", rate("protocol_errors")]],
];

/** The tiles on top, from the node totals. */
const TILES = [
  ["connections", (n) => n.connections, (n) => `${n.connections_ws} ws · ${n.connections_resp} resp`],
  ["messages_in", rate("messages_in"), null, "messages in/s"],
  ["deliveries", rate("deliveries"), null, "deliveries/s"],
  ["bytes_in", rate("bytes_in"), null, "bytes in/s", bytes],
  ["bytes_out", rate("bytes_out"), null, "bytes out/s", bytes],
  ["rooms_homed", (n) => n.rooms_homed, (n) => `${n.memberships} memberships`, "rooms homed"],
  ["ring", rate("ring_sent"), (n) => `${n.ring_full} ring full in all`, "ring frames/s"],
  ["slow_consumer_closes", (n) => n.slow_consumer_closes, null, "slow-consumer closes"],
  ["protocol_errors", (n) => n.protocol_errors, null, "protocol errors"],
];

/** A series' per-second rate of counter `field` between two samples. */
function rate(field) {
  return (s, prev) => {
    if (!prev) return 0;
    const dt = (s._t - prev._t) / 1000;
    return dt > 0 ? Math.max(0, (s[field] - prev[field]) / dt) : 0;
  };
}

let samples = []; // {t, node, shards}
let token = new URLSearchParams(location.hash.slice(1)).get("token") ?? sessionStorage.getItem("ringcast.admin") ?? "";
const charts = [];

$("window").textContent = String(KEEP / 60);

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value;
  sessionStorage.setItem("ringcast.admin", token);
  $("login").hidden = true;
  poll();
});

async function poll() {
  clearTimeout(poll.timer);
  let doc;
  try {
    const res = await fetch("/stats", { cache: "no-store", headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (res.status === 401) {
      $("login").hidden = false;
      return status("needs the admin token", true);
    }
    if (!res.ok) throw new Error(`/stats answered ${res.status}`);
    doc = await res.json();
  } catch (e) {
    status(`cannot read /stats: ${e.message}`, true);
    poll.timer = setTimeout(poll, EVERY_MS);
    return;
  }
  add(doc);
  draw(doc);
  status(`updated ${new Date().toLocaleTimeString()}`);
  poll.timer = setTimeout(poll, EVERY_MS);
}

function status(text, bad = false) {
  $("status").textContent = text;
  $("status").classList.toggle("bad", bad);
}

/** Keeps a sample; a server that restarted (its clock went back) starts the history again. */
function add(doc) {
  const t = doc.uptime_ms ?? doc.uptime_s * 1000;
  const last = samples.at(-1);
  if (last && (t < last.t || doc.shards.length !== last.shards.length)) samples = [];
  const stamp = (o) => ({ ...o, _t: t, protocol_errors: o.protocol_errors ?? sum(o.errors) });
  samples.push({ t, node: stamp(doc.node), shards: doc.shards.map(stamp) });
  if (samples.length > KEEP) samples.shift();
}

function draw(doc) {
  $("health").textContent = doc.healthy ? "healthy" : "unhealthy";
  $("health").className = `badge ${doc.healthy ? "ok" : "bad"}`;
  $("meta").textContent = `v${doc.version} · ${doc.shard_count} shards · up ${duration(doc.uptime_s)}`;
  drawTiles();
  drawShards(doc);
}

function drawTiles() {
  const now = samples.at(-1).node;
  const prev = samples.at(-2)?.node;
  const box = $("totals");
  for (const [key, value, sub, label = key, format = number] of TILES) {
    let tile = box.querySelector(`[data-metric="${key}"]`);
    if (!tile) {
      tile = el("div", "tile");
      tile.dataset.metric = key;
      tile.append(el("div", "label", label), el("div", "value"), el("div", "sub"));
      box.append(tile);
    }
    const v = value(now, prev);
    tile.dataset.value = String(v);
    tile.querySelector(".value").textContent = format(v);
    tile.querySelector(".sub").textContent = sub ? sub(now) : "";
  }
}

function drawShards(doc) {
  const box = $("shards");
  while (charts.length > doc.shards.length) charts.pop().card.remove();
  doc.shards.forEach((s, i) => {
    if (!charts[i]) {
      const card = el("article", "shard");
      card.dataset.shard = String(i);
      const title = el("h2", "", `shard ${i}`);
      title.append(el("span", "where"));
      const canvas = document.createElement("canvas");
      card.append(title, canvas);
      box.append(card);
      charts[i] = { card, canvas, where: title.querySelector(".where") };
    }
    charts[i].where.textContent = `core ${s.core ?? "–"} · ${s.driver} · heartbeat ${s.heartbeat_age_ms} ms ago`;
    chart(charts[i].canvas, samples.map((x) => x.shards[i]));
  });
}

/** One shard's lanes on its canvas: each lane its own scale, newest on the right. */
function chart(canvas, series) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = LANES.length * LANE_H;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  const left = 118;
  const plotW = w - left - 8;
  // The time axis grows with the samples, from 30 s to KEEP.
  const span = Math.min(KEEP, Math.max(30, series.length));
  const step = plotW / (span - 1);
  LANES.forEach(([label, ...lines], lane) => {
    let legendX = 0;
    const top = lane * LANE_H;
    const values = lines.map(([, , f]) => series.map((s, k) => f(s, series[k - 1])));
    const max = Math.max(1, ...values.flat());
    g.fillStyle = "#263040";
    g.fillRect(left, top + LANE_H - 6, plotW, 1);
    g.fillStyle = "#8894a7";
    g.fillText(label, 0, top + 14);
    g.fillText(`max ${number(max)}`, 0, top + 28);
    lines.forEach(([name, color], j) => {
      const v = values[j];
      g.strokeStyle = color;
      g.lineWidth = 1.5;
      g.beginPath();
      v.forEach((y, k) => {
        const x = left + (span - v.length + k) * step;
        const py = top + LANE_H - 6 - (y / max) * (LANE_H - 14);
        k === 0 ? g.moveTo(x, py) : g.lineTo(x, py);
      });
      g.stroke();
      g.fillStyle = color;
      const legend = `${name} ${number(v.at(-1) ?? 0)}`;
      g.fillText(legend, legendX, top + 42);
      legendX += g.measureText(legend).width + 8;
    });
  });
}

// ---- helpers ----------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function sum(o = {}) {
  return Object.values(o).reduce((a, b) => a + b, 0);
}

function number(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) || v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

function bytes(v) {
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
  return `${Math.round(v)} B`;
}

function duration(s) {
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

poll();
