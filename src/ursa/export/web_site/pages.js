// What the upload and live pages share: the model line, probability bars, a ring buffer
// and percentiles. Plain browser JavaScript; every name is inserted as text, never as HTML.
// (Adapted from ursa serve's pages, src/ursa/serve/static/common.js and live.js.)
"use strict";

const pages = {
  // Show what was loaded (or why not) in `element`; resolves to ursaModel.info or null.
  async showModel(element, runtime) {
    try {
      const info = await ursaModel.ready;
      element.className = "muted";
      element.textContent = `${info.arch} · ${info.class_names.length} classes · ` +
        `${info.model} (${info.precision})`;
      runtime.textContent = `ONNX Runtime Web ${info.onnxruntime_web}, WebAssembly, ` +
        `${info.summary}; model loaded in ${info.load_ms.toFixed(0)} ms. ` +
        "Everything runs in this browser: no image leaves it.";
      runtime.dataset.threads = String(info.threads);
      runtime.dataset.isolated = String(info.cross_origin_isolated);
      return info;
    } catch (error) {
      element.className = "error";
      element.textContent = `the model did not load: ${error.message || error}`;
      return null;
    }
  },

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

function percentile(values, fraction) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, rank)];
}
