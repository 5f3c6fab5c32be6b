// The site's model line: what the browser loaded (or why not). What the pages show is in
// views.js, which ursa serve's pages use too (ursa export --web copies it from there).
// Plain browser JavaScript; every name is inserted as text, never as HTML.
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
};
