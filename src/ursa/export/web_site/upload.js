// The upload page: drag-and-drop or file picker → ursaModel.predict → bars for the top classes.
"use strict";

const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const preview = document.getElementById("preview");
const topLabel = document.getElementById("top-label");
const bars = document.getElementById("bars");
const timing = document.getElementById("timing");
let previewUrl = null;

pages.showModel(document.getElementById("model"), document.getElementById("runtime"));

async function classify(file) {
  if (!file) return;
  statusLine.className = "muted";
  statusLine.textContent = `classifying ${file.name} …`;
  try {
    const answer = await ursaModel.predict(file);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    topLabel.textContent = `${answer.label} (${(answer.probability * 100).toFixed(1)} %)`;
    pages.renderBars(bars, answer.top);
    timing.textContent = `in this browser: ${answer.browser_ms.toFixed(1)} ms ` +
      "(decode, resize, model)";
    result.hidden = false;
    statusLine.textContent = file.name;
  } catch (error) {
    result.hidden = true;
    statusLine.className = "error";
    statusLine.textContent = `${file.name}: ${error.message || error}`;
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
