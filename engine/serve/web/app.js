// The page's wiring: the reference shots and their painter, the target list, keyboard
// shortcuts, drag and drop, and the segmentation queue against the API.

import { ApiError, deleteReference, registerReference, segmentTarget, serverState } from "./api.js";
import { maskPng } from "./masks.js";
import { loadShot, Painter, shotMask } from "./painter.js";
import { download, TargetList } from "./targets.js";

const IN_FLIGHT = 4; // targets sent at once: enough to fill the server's batches, far below its queue
const BUSY_RETRIES = 20;
const $ = (selector) => document.querySelector(selector);
const isImage = (file) => file.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|gif|tiff?)$/i.test(file.name);

const state = { shots: [], current: null, version: 0, reference: null, running: false, again: false };

const painter = new Painter({ frame: $("#reference-frame"), cursor: $("#brush-cursor"), onChange: referenceChanged });
const targets = new TargetList({ list: $("#targets"), template: $("#target-template"), progress: $("#progress"),
  onChange: updateButtons });

function showError(element, error) {
  element.hidden = !error;
  element.querySelector(".message").textContent = error ? error.message : "";
  element.querySelector(".detail").textContent = error?.detail ? `Server: ${error.detail}` : "";
}

function referenceChanged() {
  state.version += 1;
  targets.markStale(state.version);
  showError($("#reference-error"), null);
  updateButtons();
}

function updateButtons() {
  const { total, withMask } = targets.counts();
  $("#segment").disabled = state.shots.length === 0 || total === 0;
  $("#download-coco").disabled = withMask === 0;
  $("#clear-targets").disabled = total === 0;
  $("#add-shot").classList.toggle("disabled", state.shots.length === 0);
  for (const id of ["#tool-brush", "#tool-eraser", "#undo", "#clear-mask", "#download-reference-mask"]) {
    $(id).disabled = state.current === null;
  }
  $("#load-mask").classList.toggle("disabled", state.current === null);
  $("#reference-empty").hidden = state.shots.length > 0;
}

// ---- reference shots ----

function renderShots() {
  const list = $("#shots");
  list.replaceChildren(...state.shots.map((shot, index) => {
    const item = $("#shot-template").content.firstElementChild.cloneNode(true);
    item.classList.toggle("selected", shot === state.current);
    item.querySelector(".pick").textContent = `Shot ${index + 1}: ${shot.name}`;
    item.querySelector(".pick").addEventListener("click", () => selectShot(shot));
    item.querySelector(".remove").addEventListener("click", () => removeShot(shot));
    return item;
  }));
  list.hidden = state.shots.length < 2;
}

function selectShot(shot) {
  state.current = shot;
  painter.show(shot);
  renderShots();
  updateButtons();
}

function removeShot(shot) {
  state.shots = state.shots.filter((s) => s !== shot);
  selectShot(state.shots.at(-1) ?? null);
  referenceChanged();
}

async function addShot(file, replace) {
  try {
    const shot = await loadShot(file);
    if (replace && state.current) state.shots[state.shots.indexOf(state.current)] = shot;
    else state.shots.push(shot);
    selectShot(shot);
    referenceChanged();
  } catch {
    showError($("#reference-error"), new Error(`The browser cannot read ${file.name} as an image.`));
  }
}

// The reference the server holds for this version of the shots, registered when first needed.
function currentReference() {
  if (state.reference?.version === state.version) return state.reference.promise;
  const stale = state.reference;
  const version = state.version;
  const promise = (async () => {
    if (stale) stale.promise.then((r) => deleteReference(r.id)).catch(() => null);
    const shots = await Promise.all(state.shots.map(async (shot) => ({ file: shot.file, maskPng: await maskPng(shotMask(shot)) })));
    const registered = await registerReference(shots);
    return { id: registered.reference_id, version };
  })();
  state.reference = { version, promise };
  promise.catch(() => { if (state.reference?.promise === promise) state.reference = null; });
  return promise;
}

// ---- segmentation ----

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function segmentOne(target, reference) {
  for (let attempt = 0; ; attempt += 1) {
    targets.set(target, "running", "Segmenting…");
    try {
      targets.done(target, await segmentTarget(reference.id, target.file), reference.version);
      return;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 503 && error.retryAfterS !== null && attempt < BUSY_RETRIES) {
        targets.set(target, "waiting", `${error.message} Trying again in ${error.retryAfterS} s…`);
        await sleep(error.retryAfterS);
      } else if (error.status === 404 && attempt === 0 && reference.version === state.version) {
        if (state.reference?.version === reference.version) state.reference = null; // expired: register again
        reference = await currentReference();
      } else {
        targets.set(target, "failed", error.message, error.detail);
        return;
      }
    }
  }
}

async function segmentPending() {
  if (state.running) { state.again = true; return; }
  state.running = true;
  try {
    do {
      state.again = false;
      let reference;
      try {
        reference = await currentReference();
      } catch (error) {
        showError($("#reference-error"), error);
        return;
      }
      const queue = targets.pending(reference.version);
      queue.forEach((target) => targets.set(target, "waiting", "Waiting…"));
      const workers = Array.from({ length: IN_FLIGHT }, async () => {
        while (queue.length) {
          const target = queue.shift();
          if (targets.targets.includes(target)) await segmentOne(target, reference);
        }
      });
      await Promise.all(workers);
    } while (state.again);
  } finally {
    state.running = false;
    updateButtons();
  }
}

function addTargets(files) {
  const images = files.filter(isImage);
  if (!images.length) return;
  targets.add(images);
  if (state.reference?.version === state.version) segmentPending(); // a reference is ready: go on
}

// ---- drag and drop: files or whole folders ----

async function entryFiles(entry) {
  if (entry.isFile) return [await new Promise((resolve, reject) => entry.file(resolve, reject))];
  const reader = entry.createReader();
  const files = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return files;
    for (const child of batch) files.push(...(await entryFiles(child)));
  }
}

async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  return (await Promise.all(entries.map(entryFiles))).flat();
}

function dropZone(element, onFiles) {
  element.addEventListener("dragover", (event) => { event.preventDefault(); element.classList.add("dragging"); });
  element.addEventListener("dragleave", () => element.classList.remove("dragging"));
  element.addEventListener("drop", async (event) => {
    event.preventDefault();
    element.classList.remove("dragging");
    onFiles(await droppedFiles(event.dataTransfer));
  });
}

// ---- controls ----

function setTool(tool) {
  painter.setTool(tool);
  $("#tool-brush").setAttribute("aria-pressed", String(tool === "brush"));
  $("#tool-eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}

function setSize(size) {
  const clamped = Math.min(Number($("#brush-size").max), Math.max(Number($("#brush-size").min), size));
  $("#brush-size").value = String(clamped);
  $("#brush-size-value").textContent = `${clamped} px`;
  painter.setSize(clamped);
}

const onFile = (selector, handler) => $(selector).addEventListener("change", (event) => {
  const files = [...event.target.files];
  event.target.value = ""; // picking the same file again fires again
  if (files.length) handler(files);
});

onFile("#reference-file", ([file]) => addShot(file, true));
onFile("#shot-file", ([file]) => addShot(file, false));
onFile("#target-files", addTargets);
onFile("#target-folder", addTargets);
onFile("#mask-file", ([file]) => painter.loadMask(file).catch((error) => showError($("#reference-error"), error)));
$("#tool-brush").addEventListener("click", () => setTool("brush"));
$("#tool-eraser").addEventListener("click", () => setTool("eraser"));
$("#brush-size").addEventListener("input", (event) => setSize(Number(event.target.value)));
$("#undo").addEventListener("click", () => painter.undo());
$("#clear-mask").addEventListener("click", () => painter.clear());
$("#download-reference-mask").addEventListener("click", async () => {
  download(await maskPng(shotMask(state.current)), `${state.current.name.replace(/\.[^.]*$/, "")}.mask.png`);
});
$("#segment").addEventListener("click", segmentPending);
$("#show-overlay").addEventListener("change", (event) => document.body.classList.toggle("no-overlay", !event.target.checked));
$("#download-coco").addEventListener("click", () => targets.downloadCoco($("#category").value.trim()));
$("#clear-targets").addEventListener("click", () => targets.clear());
dropZone($("#reference-panel"), (files) => { const [file] = files.filter(isImage); if (file) addShot(file, state.shots.length === 0); });
dropZone($("#targets-panel"), addTargets);
// A file dropped anywhere else must not make the browser navigate away from the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

document.addEventListener("keydown", (event) => {
  if (event.target.matches("input[type=text], input:not([type]), textarea")) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") {
    event.preventDefault();
    painter.undo();
  } else if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  } else if (key === "b") setTool("brush");
  else if (key === "e") setTool("eraser");
  else if (key === "[") setSize(painter.size - 4);
  else if (key === "]") setSize(painter.size + 4);
});

async function showServerState() {
  const { ready, engine } = await serverState();
  $("#server-state").textContent = ready ? `Ready · ${engine}` : `Not ready · ${engine}`;
  $("#server-state").title = engine;
  $("#server-state").classList.toggle("not-ready", !ready);
  if (!ready) setTimeout(showServerState, 2000);
}

setSize(Number($("#brush-size").value));
setTool("brush");
updateButtons();
showServerState();
document.body.dataset.ready = "true"; // the page's scripts are wired (the browser tests wait on it)
