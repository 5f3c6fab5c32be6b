// window.ursaModel: the exported model, run in this browser by ONNX Runtime Web.
//
//   await ursaModel.ready                      // resolves to ursaModel.info once loaded
//   const answer = await ursaModel.predict(x)  // x: Blob / File, <img>, <video>, <canvas>,
//                                              //    ImageBitmap or ImageData
//   answer = { label, probability, top: [{ label, probability }, ...],
//              probabilities: { name: p, ... }, browser_ms }
//
// The answer has the shape of `ursa serve`'s POST /predict (browser_ms in place of
// server_ms). Nothing leaves the browser: the model, the runtime and the images stay here.
// Needs runtime/ort.wasm.min.js (the global `ort`) and preprocess.js loaded first.
"use strict";

(function (global) {
  const P = global.ursaPreprocess;
  const here = (path) => new URL(path, global.location.href).href;

  function check(config) {
    const problems = [];
    const names = config.class_names;
    if (!Array.isArray(names) || names.length < 2 || !names.every((n) => typeof n === "string")) {
      problems.push("class_names must be two or more strings");
    }
    const pre = config.preprocess || {};
    if (!Number.isInteger(pre.size) || pre.size < 8 || pre.size > 2048) {
      problems.push("preprocess.size must be a whole number from 8 to 2048");
    }
    for (const key of ["mean", "std"]) {
      const values = pre[key];
      if (!Array.isArray(values) || values.length !== 3 || !values.every(Number.isFinite)) {
        problems.push(`preprocess.${key} must be three numbers`);
      }
    }
    if (typeof config.model !== "string" || !/^[\w.-]+\.onnx$/.test(config.model)) {
      problems.push("model must name an .onnx file in model/");
    }
    if (problems.length) throw new Error(`model/config.json: ${problems.join("; ")}`);
    return config;
  }

  async function fetchConfig() {
    if (global.location.protocol === "file:") {
      throw new Error("open this page from a web server, not as a file: for example " +
        "`python -m http.server -d SITE 8080`, then http://127.0.0.1:8080/");
    }
    const response = await fetch(here("model/config.json"));
    if (!response.ok) throw new Error(`model/config.json: HTTP ${response.status}`);
    return check(await response.json());
  }

  const state = { config: null, session: null, info: null };

  async function load() {
    const started = performance.now();
    const config = await fetchConfig();
    if (typeof ort === "undefined") throw new Error("runtime/ort.wasm.min.js did not load");
    // Threads need SharedArrayBuffer, which needs cross-origin isolation (the host sends
    // Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers); without it one.
    const isolated = global.crossOriginIsolated === true;
    ort.env.wasm.numThreads = isolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = {
      mjs: here("runtime/ort-wasm-simd-threaded.mjs"),
      wasm: here("runtime/ort-wasm-simd-threaded.wasm"),
    };
    ort.env.logLevel = "error";
    state.session = await ort.InferenceSession.create(here(`model/${config.model}`), {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    state.config = config;
    const threads = ort.env.wasm.numThreads;
    state.info = Object.freeze({
      arch: config.arch,
      class_names: config.class_names.slice(),
      model: config.model,
      precision: config.precision,
      input_size: config.preprocess.size,
      onnxruntime_web: ort.env.versions && ort.env.versions.web ? ort.env.versions.web : config.onnxruntime_web,
      threads,
      cross_origin_isolated: isolated,
      load_ms: performance.now() - started,
      summary: `${threads} thread${threads === 1 ? "" : "s"}` + (isolated
        ? " (cross-origin isolated)"
        : " (not cross-origin isolated: the host sends no COOP/COEP headers)"),
    });
    api.info = state.info;
    return state.info;
  }

  async function pictureOf(input) {
    const limits = {
      maxPixels: state.config.max_pixels || P.DEFAULT_LIMITS.maxPixels,
      maxFileBytes: state.config.max_file_bytes || P.DEFAULT_LIMITS.maxFileBytes,
    };
    if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) input = new Blob([input]);
    if (input instanceof Blob) return (await P.decodeFile(input, state.config.preprocess, limits)).picture;
    return P.fromElement(input);
  }

  function answer(logits, started) {
    const names = state.config.class_names;
    if (logits.length !== names.length) {
      throw new Error(`the model gave ${logits.length} outputs for ${names.length} classes`);
    }
    // Softmax in doubles, as ursa.core.prediction does.
    let max = -Infinity;
    for (const value of logits) max = Math.max(max, value);
    const exps = Array.from(logits, (value) => Math.exp(value - max));
    const total = exps.reduce((a, b) => a + b, 0);
    // No prototype: a class named "__proto__" or "constructor" is an ordinary key.
    const probabilities = Object.create(null);
    const scores = names.map((label, i) => ({ label, probability: exps[i] / total }));
    for (const score of scores) probabilities[score.label] = score.probability;
    const top = scores.slice().sort((a, b) => b.probability - a.probability);
    return {
      label: top[0].label,
      probability: top[0].probability,
      top: top.slice(0, state.config.top_k || 5),
      probabilities,
      browser_ms: performance.now() - started,
    };
  }

  // One prediction at a time: ONNX Runtime Web runs one session call after another.
  let queue = Promise.resolve();

  async function runOne(input) {
    await api.ready;
    const started = performance.now();
    const data = await tensor(input);
    const size = state.config.preprocess.size;
    const feeds = { [state.config.input_name]: new ort.Tensor("float32", data, [1, 3, size, size]) };
    const outputs = await state.session.run(feeds);
    return answer(outputs[state.config.output_name].data, started);
  }

  function predict(input) {
    const result = queue.then(() => runOne(input));
    queue = result.catch(() => {});
    return result;
  }

  // The model's input for `input`: (3, size, size) float32, flat, as ursa's prepare_input.
  async function tensor(input) {
    await api.ready;
    return P.tensor(await pictureOf(input), state.config.preprocess);
  }

  const api = { ready: null, predict, tensor, info: null };
  api.ready = load();
  api.ready.catch(() => {});   // the pages show the failure; nothing is left unhandled
  global.ursaModel = api;
})(self);
