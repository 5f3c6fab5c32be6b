// The upload page: drag-and-drop or file picker → POST /predict → bars for the top classes.
// Its states: empty (a hint), classifying (nothing of the last file left), a result (the
// preview, or a note where the browser cannot draw the file, beside the bars) and an error
// (its text only). Every name and message is set as text, never as HTML.
"use strict";

const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const previewBox = document.getElementById("preview-box");
const preview = document.getElementById("preview");
const noPreview = document.getElementById("no-preview");
const topLabel = document.getElementById("top-label");
const bars = document.getElementById("bars");
const timing = document.getElementById("timing");
let previewUrl = null;
let latest = 0;  // how many files were chosen: the answer for an older one is dropped
let drawable = true;  // an image model's input can be previewed; a sound clip cannot

ursa.showModel(document.getElementById("model"));

// A model of sound clips or of raw files takes those instead of images.
const KINDS = {
  audio: ["audio/*", "sound clip", "Drop a sound clip here, or click to choose one",
    "WAV, FLAC or OGG"],
  bytes: ["", "file", "Drop any file here, or click to choose one",
    "its bytes are drawn as a picture"],
};
ursa.metadata().then((meta) => {
  const kind = KINDS[meta.input && meta.input.kind];
  if (!kind) return;
  input.accept = kind[0];
  document.getElementById("drop-title").textContent = kind[2];
  document.getElementById("drop-hint").textContent = `${kind[3]}; it is sent to this server only`;
  drawable = false;
  previewBox.hidden = true;
  result.classList.add("no-preview");
  if (latest === 0) say(`No ${kind[1]} yet: choose one and its most probable classes show here.`);
}).catch(() => {});  // the model line already reports an unreachable server

function say(text, className = "muted") {
  statusLine.className = className;
  statusLine.textContent = text;
}

// Take away everything shown for an earlier file: bars, label, timing, preview.
function clearResult() {
  result.hidden = true;
  topLabel.textContent = "";
  bars.replaceChildren();
  timing.textContent = "";
  preview.hidden = true;
  preview.removeAttribute("src");
  noPreview.hidden = true;
  noPreview.textContent = "";
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
}

// Draw `file` in the preview, or say that this browser cannot (TIFF, in most browsers):
// an <img> it cannot decode is never shown, so no broken-image box appears.
async function showPreview(file, turn) {
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
  try {
    await preview.decode();
    if (turn === latest) preview.hidden = false;
  } catch {
    if (turn !== latest) return;
    preview.removeAttribute("src");
    noPreview.textContent = `no preview: this browser cannot draw ${file.name}`;
    noPreview.hidden = false;
  }
}

async function classify(file) {
  if (!file) return;
  const turn = ++latest;
  clearResult();
  say(`classifying ${file.name} …`);
  const started = performance.now();
  try {
    const answer = await ursa.predict(file);
    const roundTrip = performance.now() - started;
    if (turn !== latest) return;
    if (drawable) await showPreview(file, turn);
    if (turn !== latest) return;
    topLabel.textContent = `${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
    ursa.renderBars(bars, answer.top);
    timing.textContent = `server ${answer.server_ms.toFixed(1)} ms · round trip ${roundTrip.toFixed(1)} ms`;
    result.hidden = false;
    say(file.name);
  } catch (error) {
    if (turn !== latest) return;
    clearResult();
    say(`${file.name}: ${error.message}`, "error");
  }
}

input.addEventListener("change", () => {
  classify(input.files[0]);
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
  classify(event.dataTransfer.files[0]);
});
