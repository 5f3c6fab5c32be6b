// The upload page: drag-and-drop or file picker → ursaModel.predict → bars for the top classes.
// Its states, as on ursa serve's page: empty (a hint), classifying (nothing of the last file
// left), a result (the preview, or a note where the browser cannot draw the file, beside the
// bars) and an error (its text only). Every name and message is set as text, never as HTML.
"use strict";

const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const preview = document.getElementById("preview");
const noPreview = document.getElementById("no-preview");
const topLabel = document.getElementById("top-label");
const bars = document.getElementById("bars");
const timing = document.getElementById("timing");
let previewUrl = null;
let latest = 0;  // how many files were chosen: the answer for an older one is dropped

pages.showModel(document.getElementById("model"), document.getElementById("runtime"));

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

// Draw `file` in the preview, or say that this browser cannot: an <img> it cannot decode
// is never shown, so no broken-image box appears.
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
  try {
    const answer = await ursaModel.predict(file);
    if (turn !== latest) return;
    await showPreview(file, turn);
    if (turn !== latest) return;
    topLabel.textContent = `${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
    pages.renderBars(bars, answer.top);
    timing.textContent = `in this browser: ${answer.browser_ms.toFixed(1)} ms ` +
      "(decode, resize, model)";
    result.hidden = false;
    say(file.name);
  } catch (error) {
    if (turn !== latest) return;
    clearResult();
    say(`${file.name}: ${error.message || error}`, "error");
  }
}

input.addEventListener("change", () => {
  classify(input.files[0]);
  input.value = "";   // choosing the same file again classifies it again
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
