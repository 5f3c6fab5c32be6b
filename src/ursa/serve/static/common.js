// Helpers shared by the upload and live pages. Plain browser JavaScript, no libraries.
"use strict";

const ursa = {
  async metadata() {
    const response = await fetch("/metadata");
    if (!response.ok) throw new Error(`metadata: HTTP ${response.status}`);
    return response.json();
  },

  // POST image bytes to /predict; resolves to the JSON answer or throws with the server's detail.
  async predict(blob) {
    let response;
    try {
      response = await fetch("/predict", {
        method: "POST",
        headers: { "Content-Type": blob.type || "application/octet-stream" },
        body: blob,
      });
    } catch {
      throw new Error("the server did not answer (is ursa serve still running?)");
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof answer.detail === "string" ? answer.detail : "";
      throw new Error(detail || `HTTP ${response.status}`);
    }
    return answer;
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
      fill.style.display = "block";
      fill.style.width = `${(probability * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(probability * 100).toFixed(1)} %`;
      item.append(name, track, value);
      list.append(item);
    }
  },

  async showModel(element) {
    try {
      const meta = await ursa.metadata();
      element.textContent = `${meta.arch} · ${meta.class_names.length} classes · ` +
        `${meta.model} on ${meta.execution_providers[0]}`;
      return meta;
    } catch (error) {
      element.textContent = String(error);
      return null;
    }
  },
};
