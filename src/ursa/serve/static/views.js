// What ursa serve's pages and the web export's pages (ursa export --web, which copies this
// file into the site) show alike: the probability bars, the upload page's states and the
// live page's chart, legend and frame statistics. Each page passes in how it predicts
// (a POST to the server, or the model in the browser). Plain browser JavaScript, no
// libraries; every name and message is set as text, never as HTML.
"use strict";

const views = {
  // Replace the children of <ol> with one bar per (label, probability) pair.
  renderBars(list, top) {
    list.replaceChildren();
    for (const { label, probability } of top) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(probability * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(probability * 100).toFixed(1)} %`;
      item.append(name, track, value);
      list.append(item);
    }
  },

  // Set the status line's text and look (muted, or error).
  say(line, text, className = "muted") {
    line.className = className;
    line.textContent = text;
  },

  pause: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

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

// The smallest value with at least `fraction` of `values` at or below it (NaN when empty).
function percentile(values, fraction) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, rank)];
}

// The upload page: drag-and-drop or the file picker → `predict(file)` → bars for the top
// classes. Its states: empty (a hint), classifying (nothing of the last file left), a
// result (the preview, or a note where the browser cannot draw the file, beside the bars)
// and an error (its text only). `timing(answer, milliseconds)` is the line under the bars.
class UploadPage {
  constructor(predict, timing) {
    this.predict = predict;
    this.timing = timing;
    this.element = (id) => document.getElementById(id);
    this.status = this.element("status");
    this.result = this.element("result");
    this.preview = this.element("preview");
    this.noPreview = this.element("no-preview");
    this.previewUrl = null;
    this.latest = 0;      // how many files were chosen: the answer for an older one is dropped
    this.drawable = true; // an image model's input can be previewed; a sound clip cannot
    const input = this.element("file");
    const drop = this.element("drop");
    input.addEventListener("change", () => {
      this.classify(input.files[0]);
      input.value = "";  // choosing the same file again classifies it again
    });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, () => drop.classList.remove("over"));
    }
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.classify(event.dataTransfer.files[0]);
    });
  }

  say(text, className = "muted") { views.say(this.status, text, className); }

  // Take away everything shown for an earlier file: bars, label, timing, preview.
  clearResult() {
    this.result.hidden = true;
    this.element("top-label").textContent = "";
    this.element("bars").replaceChildren();
    this.element("timing").textContent = "";
    this.preview.hidden = true;
    this.preview.removeAttribute("src");
    this.noPreview.hidden = true;
    this.noPreview.textContent = "";
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
  }

  // Draw `file` in the preview, or say that this browser cannot (TIFF, in most browsers):
  // an <img> it cannot decode is never shown, so no broken-image box appears.
  async showPreview(file, turn) {
    this.previewUrl = URL.createObjectURL(file);
    this.preview.src = this.previewUrl;
    try {
      await this.preview.decode();
      if (turn === this.latest) this.preview.hidden = false;
    } catch {
      if (turn !== this.latest) return;
      this.preview.removeAttribute("src");
      this.noPreview.textContent = `no preview: this browser cannot draw ${file.name}`;
      this.noPreview.hidden = false;
    }
  }

  async classify(file) {
    if (!file) return;
    const turn = ++this.latest;
    this.clearResult();
    this.say(`classifying ${file.name} …`);
    const started = performance.now();
    try {
      const answer = await this.predict(file);
      const milliseconds = performance.now() - started;
      if (turn !== this.latest) return;
      if (this.drawable) await this.showPreview(file, turn);
      if (turn !== this.latest) return;
      this.element("top-label").textContent =
        `${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
      views.renderBars(this.element("bars"), answer.top);
      this.element("timing").textContent = this.timing(answer, milliseconds);
      this.result.hidden = false;
      this.say(file.name);
    } catch (error) {
      if (turn !== this.latest) return;
      this.clearResult();
      this.say(`${file.name}: ${error.message || error}`, "error");
    }
  }
}

// The live page: camera frames → `predict(video)`, one at a time; a per-class probability
// chart over the last HISTORY frames (ring buffers) and latency percentiles over the last
// LATENCY_WINDOW. Call `ready(classNames)` once the model's classes are known.
class LivePage {
  static HISTORY = 120;        // frames kept per class for the chart
  static LATENCY_WINDOW = 100; // frames used for p50 / p99
  static COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285",
                    "#c2255c", "#5c940d", "#364fc7", "#862e9c"];

  constructor(predict) {
    this.predict = predict;
    this.video = document.getElementById("video");
    this.toggle = document.getElementById("toggle");
    this.status = document.getElementById("status");
    this.chart = document.getElementById("chart");
    this.legend = document.getElementById("legend");
    this.current = document.getElementById("current");
    this.classNames = [];
    this.series = [];
    this.latencies = new Ring(LivePage.LATENCY_WINDOW);
    this.finished = new Ring(LivePage.LATENCY_WINDOW);  // completion times, for frames/s
    this.frames = 0;
    this.running = false;
    this.stream = null;
    this.toggle.addEventListener("click", () => (this.running ? this.stop() : this.start()));
  }

  ready(classNames) {
    this.classNames = classNames;
    this.series = classNames.map(() => new Ring(LivePage.HISTORY));
    this.buildLegend();
    this.drawChart(-1);
    this.toggle.disabled = false;
  }

  buildLegend() {
    this.legend.replaceChildren();
    this.classNames.forEach((name, index) => {
      const item = document.createElement("li");
      item.dataset.label = name;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = LivePage.COLOURS[index % LivePage.COLOURS.length];
      item.append(swatch, document.createTextNode(name));
      this.legend.append(item);
    });
  }

  drawChart(currentIndex) {
    const context = this.chart.getContext("2d");
    const { width, height } = this.chart;
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
    const step = (width - pad - 8) / (LivePage.HISTORY - 1);
    this.series.forEach((ring, index) => {
      const values = ring.toArray();
      if (!values.length) return;
      context.strokeStyle = LivePage.COLOURS[index % LivePage.COLOURS.length];
      context.lineWidth = index === currentIndex ? 3.5 : 1.5;
      context.beginPath();
      const offset = LivePage.HISTORY - values.length;  // newest frame at the right edge
      values.forEach((value, i) => {
        const x = pad + (offset + i) * step;
        const y = height - pad - value * (height - 2 * pad);
        if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
      });
      context.stroke();
    });
  }

  showStats() {
    const recent = this.latencies.toArray();
    document.getElementById("p50").textContent = `${percentile(recent, 0.5).toFixed(1)} ms`;
    document.getElementById("p99").textContent = `${percentile(recent, 0.99).toFixed(1)} ms`;
    document.getElementById("frames").textContent = String(this.frames);
    const times = this.finished.toArray();
    if (times.length > 1) {
      const fps = (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
      document.getElementById("fps").textContent = fps.toFixed(1);
    }
  }

  // Predict a frame, show it, then the next: never more than one in flight, and a pause
  // between frames for the page to handle clicks and draw.
  async loop() {
    while (this.running) {
      if (this.video.readyState < 2 || !this.video.videoWidth) {
        await views.pause(50);
        continue;
      }
      const started = performance.now();
      try {
        const answer = await this.predict(this.video);
        const done = performance.now();
        this.latencies.push(done - started);
        this.finished.push(done);
        this.frames += 1;
        this.classNames.forEach((name, index) => {
          this.series[index].push(answer.probabilities[name] ?? 0);
        });
        for (const item of this.legend.children) {
          item.classList.toggle("current", item.dataset.label === answer.label);
        }
        this.current.textContent =
          `now: ${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
        this.drawChart(this.classNames.indexOf(answer.label));
        this.showStats();
        views.say(this.status, "running");
        await views.pause(0);
      } catch (error) {
        views.say(this.status, String(error.message || error), "error");
        await views.pause(500);
      }
    }
  }

  async start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      views.say(this.status,
        "no camera here: browsers allow one on https:// pages and on localhost", "error");
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    } catch (error) {
      views.say(this.status, `no camera: ${error.message}`, "error");
      return;
    }
    this.video.srcObject = this.stream;
    this.running = true;
    this.toggle.textContent = "Stop camera";
    this.loop();
  }

  stop() {
    this.running = false;
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.toggle.textContent = "Start camera";
    views.say(this.status, "stopped");
  }
}
