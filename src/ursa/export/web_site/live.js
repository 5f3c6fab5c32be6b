// The live page: camera frames → ursaModel.predict, one at a time, in this browser; a
// per-class probability chart over the last HISTORY frames (ring buffers) and latency
// percentiles over the last LATENCY_WINDOW. (The chart follows ursa serve's live page.)
"use strict";

const HISTORY = 120;          // frames kept per class for the chart
const LATENCY_WINDOW = 100;   // frames used for p50 / p99
const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285",
                 "#c2255c", "#5c940d", "#364fc7", "#862e9c"];

const video = document.getElementById("video");
const toggle = document.getElementById("toggle");
const statusLine = document.getElementById("status");
const chart = document.getElementById("chart");
const legend = document.getElementById("legend");
const current = document.getElementById("current");

let classNames = [];
let series = [];
const latencies = new Ring(LATENCY_WINDOW);
const finished = new Ring(LATENCY_WINDOW);   // completion times, for frames/s
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

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Predict a frame, show it, then the next: never more than one in flight, and a pause
// between frames for the page to handle clicks and draw.
async function loop() {
  while (running) {
    if (video.readyState < 2 || !video.videoWidth) {
      await pause(50);
      continue;
    }
    const started = performance.now();
    try {
      const answer = await ursaModel.predict(video);
      const done = performance.now();
      latencies.push(done - started);
      finished.push(done);
      frames += 1;
      classNames.forEach((name, index) => series[index].push(answer.probabilities[name] ?? 0));
      for (const item of legend.children) {
        item.classList.toggle("current", item.dataset.label === answer.label);
      }
      current.textContent = `now: ${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
      drawChart(classNames.indexOf(answer.label));
      showStats();
      statusLine.className = "muted";
      statusLine.textContent = "running";
      await pause(0);
    } catch (error) {
      statusLine.className = "error";
      statusLine.textContent = String(error.message || error);
      await pause(500);
    }
  }
}

async function start() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    statusLine.className = "error";
    statusLine.textContent = "no camera here: browsers allow one on https:// pages and on localhost";
    return;
  }
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
  statusLine.className = "muted";
  statusLine.textContent = "stopped";
}

toggle.addEventListener("click", () => (running ? stop() : start()));

pages.showModel(document.getElementById("model"), document.getElementById("runtime")).then((info) => {
  if (!info) return;
  classNames = info.class_names;
  series = classNames.map(() => new Ring(HISTORY));
  buildLegend();
  drawChart(-1);
  toggle.disabled = false;
});
