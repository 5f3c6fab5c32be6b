// The upload page: drag-and-drop or file picker → POST /predict → bars for the top classes
// (the page's states are views.js's UploadPage, shared with the web export's page).
"use strict";

const page = new UploadPage(
  (file) => ursa.predict(file),
  (answer, roundTrip) =>
    `server ${answer.server_ms.toFixed(1)} ms · round trip ${roundTrip.toFixed(1)} ms`,
);

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
  document.getElementById("file").accept = kind[0];
  document.getElementById("drop-title").textContent = kind[2];
  document.getElementById("drop-hint").textContent = `${kind[3]}; it is sent to this server only`;
  page.drawable = false;
  document.getElementById("preview-box").hidden = true;
  page.result.classList.add("no-preview");
  if (page.latest === 0) {
    page.say(`No ${kind[1]} yet: choose one and its most probable classes show here.`);
  }
}).catch(() => {});  // the model line already reports an unreachable server
