// The live page: webcam frames → POST /predict, one at a time; a per-class probability chart
// over the last HISTORY frames (ring buffers) and latency percentiles over the last LATENCY_WINDOW.
"use strict";

const HISTORY = 120;          // frames kept per class for the chart
const LATENCY_WINDOW = 100;   // frames used for p50 / p99
const FRAME_SIDE = 320;       // longest side of the JPEG sent; the server resizes anyway
const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285",
                 "#c2255c", "#5c940d", "#364fc7", "#862e9c"];

// A fixed-size ring buffer of numbers.
class Ring {
  constructor(size) { this.values = new Float64Array(size); this.count = 0; this.next = 0; }
  push(value) {
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.values.length;
    this.count = Math.min(this.count + 1, this.values.length);
  }
  // Oldest first.
  toArray() {
    const out = [];
    const start = this.count < this.values.length ? 0 : this.next;
    for (let i = 0; i < this.count; i++) out.push(this.values[(start + i) % this.values.length]);
    return out;
  }
}

function percentile(values, fraction) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, rank)];
}

const video = document.getElementById("video");
const toggle = document.getElementById("toggle");
const statusLine = document.getElementById("status");
const chart = document.getElementById("chart");
const legend = document.getElementById("legend");
const current = document.getElementById("current");
const frame = document.createElement("canvas");

let classNames = [];
let series = [];
let latencies = new Ring(LATENCY_WINDOW);
let finished = new Ring(LATENCY_WINDOW);   // completion times, for frames/s
let frames = 0;
let running = false;
let stream = null;

function buildLegend() {
  legend.replaceChildren();
  classNames.forEach((name, index) => {
    const item = document.createElement("li");
    item.dataset.label = name;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[index % COLOURS.length];
    item.append(swatch, document.createTextNode(name));
    legend.append(item);
  });
}

function drawChart(currentIndex) {
  const context = chart.getContext("2d");
  const { width, height } = chart;
  const pad = 28;
  context.clearRect(0, 0, width, height);
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, width, height);
  context.strokeStyle = "#d9dee4";
  context.fillStyle = "#5d6874";
  context.font = "12px system-ui, sans-serif";
  context.lineWidth = 1;
  for (const level of [0, 0.25, 0.5, 0.75, 1]) {
    const y = height - pad - level * (height - 2 * pad);
    context.beginPath(); context.moveTo(pad, y); context.lineTo(width - 8, y); context.stroke();
    context.fillText(level.toFixed(2), 0, y + 4);
  }
  const step = (width - pad - 8) / (HISTORY - 1);
  series.forEach((ring, index) => {
    const values = ring.toArray();
    if (!values.length) return;
    context.strokeStyle = COLOURS[index % COLOURS.length];
    context.lineWidth = index === currentIndex ? 3.5 : 1.5;
    context.beginPath();
    const offset = HISTORY - values.length;   // newest frame at the right edge
    values.forEach((value, i) => {
      const x = pad + (offset + i) * step;
      const y = height - pad - value * (height - 2 * pad);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  });
}

function showStats() {
  const recent = latencies.toArray();
  document.getElementById("p50").textContent = `${percentile(recent, 0.5).toFixed(1)} ms`;
  document.getElementById("p99").textContent = `${percentile(recent, 0.99).toFixed(1)} ms`;
  document.getElementById("frames").textContent = String(frames);
  const times = finished.toArray();
  if (times.length > 1) {
    const fps = (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
    document.getElementById("fps").textContent = fps.toFixed(1);
  }
}

function grabFrame() {
  const scale = FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight);
  frame.width = Math.max(1, Math.round(video.videoWidth * scale));
  frame.height = Math.max(1, Math.round(video.videoHeight * scale));
  frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
  return new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.85));
}

// Send a frame, wait for its answer, then send the next: never more than one in flight.
async function loop() {
  while (running) {
    if (video.readyState < 2 || !video.videoWidth) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    const blob = await grabFrame();
    const started = performance.now();
    try {
      const answer = await ursa.predict(blob);
      const done = performance.now();
      latencies.push(done - started);
      finished.push(done);
      frames += 1;
      classNames.forEach((name, index) => series[index].push(answer.probabilities[name] ?? 0));
      const index = classNames.indexOf(answer.label);
      for (const item of legend.children) {
        item.classList.toggle("current", item.dataset.label === answer.label);
      }
      current.textContent = `now: ${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
      drawChart(index);
      showStats();
      statusLine.className = "muted";
      statusLine.textContent = "running";
    } catch (error) {
      statusLine.className = "error";
      statusLine.textContent = String(error.message || error);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

async function start() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (error) {
    statusLine.className = "error";
    statusLine.textContent = `no camera: ${error.message}`;
    return;
  }
  video.srcObject = stream;
  running = true;
  toggle.textContent = "Stop camera";
  loop();
}

function stop() {
  running = false;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  toggle.textContent = "Start camera";
  statusLine.textContent = "stopped";
}

toggle.addEventListener("click", () => (running ? stop() : start()));

ursa.showModel(document.getElementById("model")).then((meta) => {
  if (!meta) return;
  classNames = meta.class_names;
  series = classNames.map(() => new Ring(HISTORY));
  buildLegend();
  drawChart(-1);
});
