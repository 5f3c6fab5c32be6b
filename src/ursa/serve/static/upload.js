// The upload page: drag-and-drop or file picker → POST /predict → bars for the top classes.
"use strict";

const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const preview = document.getElementById("preview");
const topLabel = document.getElementById("top-label");
const bars = document.getElementById("bars");
const timing = document.getElementById("timing");

ursa.showModel(document.getElementById("model"));

// A model of sound clips or of raw files takes those instead of images.
const KINDS = {
  audio: ["audio/*", "Drop a sound clip here, or click to choose one", "WAV, FLAC or OGG"],
  bytes: ["", "Drop any file here, or click to choose one", "its bytes are drawn as a picture"],
};
ursa.metadata().then((meta) => {
  const kind = KINDS[meta.input && meta.input.kind];
  if (!kind) return;
  input.accept = kind[0];
  document.getElementById("drop-title").textContent = kind[1];
  document.getElementById("drop-hint").textContent = `${kind[2]}; it is sent to this server only`;
  preview.hidden = true;
}).catch(() => {});  // the model line already reports an unreachable server

async function classify(file) {
  if (!file) return;
  statusLine.className = "muted";
  statusLine.textContent = `classifying ${file.name} …`;
  preview.src = URL.createObjectURL(file);
  const started = performance.now();
  try {
    const answer = await ursa.predict(file);
    const roundTrip = performance.now() - started;
    topLabel.textContent = `${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
    ursa.renderBars(bars, answer.top);
    timing.textContent = `server ${answer.server_ms.toFixed(1)} ms · round trip ${roundTrip.toFixed(1)} ms`;
    result.hidden = false;
    statusLine.textContent = file.name;
  } catch (error) {
    result.hidden = true;
    statusLine.className = "error";
    statusLine.textContent = `${file.name}: ${error.message}`;
  }
}

input.addEventListener("change", () => classify(input.files[0]));
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  classify(event.dataTransfer.files[0]);
});
