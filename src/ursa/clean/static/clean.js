// The cleaning page: a grid of images, highest loss first, and keyboard-driven decisions.
// Every change is sent with this run's token and the version of the image it was taken on;
// the server answers 409 when another tab changed the image first.
"use strict";

(() => {
  const token = document.querySelector('meta[name="ursa-token"]').content;
  const byId = (id) => document.getElementById(id);
  const grid = byId("grid");
  const statusLine = byId("status");
  const template = byId("card-template");
  const UNDO_KEY = "ursa-clean-undo"; // decisions made in this tab, newest last
  const view = {
    classes: [],
    pageSize: 48,
    images: [],
    total: 0,
    selected: 0,
    filters: { label: "all", split: "all", state: "active", page: 0 },
  };
  let queue = Promise.resolve(); // decisions run one after another, in key-press order

  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (method !== "GET") {
      init.headers["X-Ursa-Token"] = token;
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, init);
    let payload = null;
    try {
      payload = await response.json();
    } catch (ignored) {
      payload = null;
    }
    if (!response.ok) {
      let detail = payload && payload.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      const error = new Error(detail || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return payload;
  }

  function undoStack() {
    try {
      return JSON.parse(sessionStorage.getItem(UNDO_KEY) || "[]");
    } catch (ignored) {
      return [];
    }
  }

  function saveUndo(stack) {
    sessionStorage.setItem(UNDO_KEY, JSON.stringify(stack.slice(-1000)));
  }

  // -- filters live in the address (#label=...&split=...), so a reload keeps them ----------

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const f = view.filters;
    f.label = params.get("label") || "all";
    f.split = params.get("split") || "all";
    f.state = params.get("state") || "active";
    f.page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  }

  function writeHash() {
    const f = view.filters;
    const params = new URLSearchParams({ label: f.label, split: f.split, state: f.state, page: f.page });
    history.replaceState(null, "", `#${params}`);
  }

  // -- drawing -------------------------------------------------------------------------

  function decisionOf(image) {
    if (image.state === "deleted") return ["deleted", "deleted"];
    if (image.decision === "relabel") return ["relabeled", `moved to ${image.label}`];
    if (image.decision === "keep") return ["kept", "kept"];
    if (image.lastAction === "undo") return ["", "undone"];
    return image.reviewed ? ["kept", "reviewed"] : ["", ""];
  }

  function fill(node, image) {
    node.dataset.id = image.id;
    node.dataset.label = image.label;
    node.dataset.state = image.state;
    node.dataset.name = image.name;
    const picture = node.querySelector("img");
    if (picture.getAttribute("src") !== image.thumbnail) picture.src = image.thumbnail;
    picture.alt = image.name;
    node.querySelector(".name").textContent = image.name;
    node.querySelector(".label").textContent = image.label;
    node.querySelector(".predicted").textContent = image.predicted
      ? `· predicted ${image.predicted} ${image.probability.toFixed(2)}`
      : `· ${image.problem}`;
    node.querySelector(".loss").textContent =
      image.loss === null ? "" : `loss ${image.loss.toFixed(2)} · ${image.split || "no split"}`;
    const [decision, badge] = decisionOf(image);
    node.dataset.decision = decision;
    node.querySelector(".badge").textContent = badge;
    const active = image.state === "active";
    node.querySelectorAll("button, select").forEach((control) => {
      control.disabled = !active;
    });
  }

  function card(image, index) {
    const node = template.content.firstElementChild.cloneNode(true);
    const mover = node.querySelector("select");
    view.classes.forEach((name, position) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = `${position + 1} · ${name}`;
      mover.append(option);
    });
    fill(node, image);
    node.addEventListener("click", () => select(index));
    node.querySelectorAll("button").forEach((button) => {
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        select(index);
        decide(button.dataset.action);
      });
    });
    mover.addEventListener("change", () => {
      const target = mover.value;
      mover.value = "";
      mover.blur();
      if (target) {
        select(index);
        decide("relabel", target);
      }
    });
    return node;
  }

  function render() {
    grid.replaceChildren();
    if (view.images.length === 0) {
      const empty = document.createElement("p");
      empty.className = "empty muted";
      empty.textContent = "No images here: choose another class, split or page.";
      grid.append(empty);
    }
    view.images.forEach((image, index) => grid.append(card(image, index)));
    const pages = Math.max(1, Math.ceil(view.total / view.pageSize));
    byId("page-info").textContent =
      `page ${view.filters.page + 1} of ${pages} · ${view.total} images, highest loss first`;
    byId("previous-page").disabled = view.filters.page === 0;
    byId("next-page").disabled = view.filters.page + 1 >= pages;
  }

  function select(index) {
    if (view.images.length === 0) return;
    view.selected = Math.max(0, Math.min(index, view.images.length - 1));
    Array.from(grid.children).forEach((node, position) => {
      node.setAttribute("aria-selected", String(position === view.selected));
    });
    const node = grid.children[view.selected];
    if (node && node.scrollIntoView) node.scrollIntoView({ block: "nearest" });
  }

  function columns() {
    const template = getComputedStyle(grid).gridTemplateColumns;
    return Math.max(1, template.split(" ").filter(Boolean).length);
  }

  function showSummary(summary) {
    byId("summary").textContent =
      `relabeled ${summary.relabeled} · deleted ${summary.deleted} · kept ${summary.kept}`;
  }

  // -- loading -------------------------------------------------------------------------

  async function loadPage(selectIndex = 0) {
    const f = view.filters;
    const query = new URLSearchParams({
      label: f.label, split: f.split, state: f.state,
      offset: f.page * view.pageSize, limit: view.pageSize,
    });
    const page = await api("GET", `/api/images?${query}`);
    const last = Math.max(0, Math.ceil(page.total / view.pageSize) - 1);
    if (f.page > last) {
      f.page = last;
      return loadPage(selectIndex);
    }
    view.images = page.images;
    view.total = page.total;
    render();
    select(selectIndex < 0 ? view.images.length - 1 : selectIndex);
    writeHash();
    document.body.dataset.loaded = String(Date.now());
    return page;
  }

  function turn(step, selectIndex = 0) {
    const pages = Math.max(1, Math.ceil(view.total / view.pageSize));
    const next = view.filters.page + step;
    if (next < 0 || next >= pages) return;
    view.filters.page = next;
    queue = queue.then(() => loadPage(selectIndex)).catch((error) => say(error.message, true));
  }

  function move(step) {
    const target = view.selected + step;
    if (target >= view.images.length && step === 1) turn(1, 0);
    else if (target < 0 && step === -1) turn(-1, -1);
    else select(target);
  }

  // -- decisions -----------------------------------------------------------------------

  function apply(result) {
    showSummary(result.summary);
    const index = view.images.findIndex((image) => image.id === result.image.id);
    if (index >= 0) {
      view.images[index] = { ...result.image, lastAction: result.entry.action };
      fill(grid.children[index], view.images[index]);
    }
    return index;
  }

  function decide(action, label) {
    const chosen = view.images[view.selected]; // the card selected when the key was pressed
    if (!chosen) return;
    queue = queue.then(async () => {
      const index = view.images.findIndex((image) => image.id === chosen.id);
      const image = view.images[index]; // its latest version, after earlier decisions
      if (!image) return;
      if (image.state !== "active") {
        say(`${image.name} is deleted: press u to undo, or show "deleted" to see it`, true);
        return;
      }
      const body = { version: image.version };
      if (action === "relabel") body.label = label;
      try {
        const result = await api("POST", `/api/images/${image.id}/${action}`, body);
        apply(result);
        const stack = undoStack();
        stack.push(result.entry.id);
        saveUndo(stack);
        say(`#${result.entry.id} ${result.entry.description} · u undoes it`);
        if (view.selected === index) select(index + 1);
      } catch (error) {
        say(error.status === 409 ? error.message : `not done: ${error.message}`, true);
      }
    });
  }

  function undo() {
    queue = queue.then(async () => {
      const stack = undoStack();
      const entryId = stack.pop();
      if (entryId === undefined) {
        say("nothing to undo from this tab (`ursa clean DATA --history` lists every decision)");
        return;
      }
      try {
        const result = await api("POST", `/api/journal/${entryId}/undo`);
        saveUndo(stack);
        const index = apply(result);
        if (index >= 0) select(index);
        say(`#${result.entry.id} ${result.entry.description}`);
      } catch (error) {
        if (error.status >= 400 && error.status < 500) saveUndo(stack); // it cannot be undone
        say(`could not undo #${entryId}: ${error.message}`, true);
      }
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target && event.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") return;
    const key = event.key;
    let handled = true;
    if (key === "ArrowRight" || key === "n") move(1);
    else if (key === "ArrowLeft" || key === "p") move(-1);
    else if (key === "ArrowDown") select(view.selected + columns());
    else if (key === "ArrowUp") select(view.selected - columns());
    else if (key === "k") decide("keep");
    else if (key === "d") decide("delete");
    else if (key === "u") undo();
    else if (key === "]" || key === "PageDown") turn(1);
    else if (key === "[" || key === "PageUp") turn(-1);
    else if (/^[1-9]$/.test(key) && Number(key) <= view.classes.length) {
      decide("relabel", view.classes[Number(key) - 1]);
    } else handled = false;
    if (handled) event.preventDefault();
  });

  async function start() {
    readHash();
    const info = await api("GET", "/api/session");
    view.classes = info.class_names;
    view.pageSize = info.page_size;
    byId("dataset").textContent = `${info.data} · model ${info.bundle}`;
    const labelSelect = byId("label");
    info.class_names.forEach((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = `${name} (${info.counts[name] || 0})`;
      labelSelect.append(option);
    });
    const keys = byId("class-keys");
    info.class_names.slice(0, 9).forEach((name, position) => {
      const key = document.createElement("kbd");
      key.textContent = String(position + 1);
      keys.append(key, `${name} `);
    });
    showSummary(info.summary);
    if (!view.classes.includes(view.filters.label)) view.filters.label = "all";
    for (const name of ["label", "split", "state"]) {
      const control = byId(name);
      control.value = view.filters[name];
      if (control.value !== view.filters[name]) control.value = control.options[0].value;
      view.filters[name] = control.value;
      control.addEventListener("change", () => {
        view.filters[name] = control.value;
        view.filters.page = 0;
        control.blur();
        queue = queue.then(() => loadPage()).catch((error) => say(error.message, true));
      });
    }
    byId("previous-page").addEventListener("click", () => turn(-1));
    byId("next-page").addEventListener("click", () => turn(1));
    await loadPage();
  }

  start().catch((error) => say(`could not load the images: ${error.message}`, true));
})();
