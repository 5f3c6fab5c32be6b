// What ursa serve's pages ask the server: its model, and predictions. Plain browser
// JavaScript, no libraries (what they show is in views.js, shared with the web export).
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
