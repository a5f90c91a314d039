// The page's wiring: the reference shots with their painter (segment mode) or point picker
// (match mode), the target list, keyboard shortcuts, drag and drop, and the jobs against the API.

import { serverState } from "./api.js";
import { Jobs } from "./jobs.js";
import { maskPng } from "./masks.js";
import { PointPicker } from "./matching.js";
import { loadShot, Painter, shotMask } from "./painter.js";
import { download, TargetList } from "./targets.js";

const $ = (selector) => document.querySelector(selector);
const isImage = (file) => file.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|gif|tiff?)$/i.test(file.name);

const state = { mode: "segment", shots: [], current: null, version: 0 };

const painter = new Painter({ frame: $("#reference-frame"), cursor: $("#brush-cursor"), onChange: referenceChanged });
const picker = new PointPicker({ frame: $("#reference-frame"), layer: $("#reference-points"), onChange: pointsChanged });
const targets = new TargetList({ list: $("#targets"), template: $("#target-template"), progress: $("#progress"),
  onChange: updateButtons });
const jobs = new Jobs({ state, targets, onReferenceError: (error) => showError($("#reference-error"), error) });

function showError(element, error) {
  element.hidden = !error;
  element.querySelector(".message").textContent = error ? error.message : "";
  element.querySelector(".detail").textContent = error?.detail ? `Server: ${error.detail}` : "";
}

function referenceChanged() {
  state.version += 1;
  targets.markStale("segment", jobs.version("segment"));
  showError($("#reference-error"), null);
  updateButtons();
}

function pointsChanged() {
  targets.markStale("match", jobs.version("match"));
  showError($("#reference-error"), null);
  updateButtons();
}

function updateButtons() {
  const { total, withMask, withMatches } = targets.counts();
  const noShot = state.current === null;
  $("#run").disabled = noShot || total === 0;
  $("#run").textContent = state.mode === "segment" ? "Segment" : "Match";
  $("#download-coco").disabled = withMask === 0;
  $("#download-matches").disabled = withMatches === 0;
  $("#clear-targets").disabled = total === 0;
  $("#add-shot").classList.toggle("disabled", noShot);
  $("#load-mask").classList.toggle("disabled", noShot);
  for (const id of ["#tool-brush", "#tool-eraser", "#undo", "#clear-mask", "#download-reference-mask"]) $(id).disabled = noShot;
  $("#reference-empty").hidden = !noShot;
}

function setMode(mode) {
  state.mode = mode;
  document.body.dataset.mode = mode;
  painter.active = mode === "segment";
  picker.active = mode === "match";
  targets.setMode(mode);
  showError($("#reference-error"), null);
}

// ---- reference shots ----

function renderShots() {
  $("#shots").replaceChildren(...state.shots.map((shot, index) => {
    const item = $("#shot-template").content.firstElementChild.cloneNode(true);
    item.classList.toggle("selected", shot === state.current);
    item.querySelector(".pick").textContent = `Shot ${index + 1}: ${shot.name}`;
    item.querySelector(".pick").addEventListener("click", () => selectShot(shot));
    item.querySelector(".remove").addEventListener("click", () => removeShot(shot));
    return item;
  }));
  $("#shots").hidden = state.shots.length < 2;
}

function selectShot(shot) {
  state.current = shot;
  painter.show(shot);
  picker.show(shot);
  renderShots();
  pointsChanged(); // matching uses the shown shot
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

function run() {
  if (state.mode === "match" && !state.current?.points.length) {
    showError($("#reference-error"), new Error("Click on the reference to place the points to match first."));
    return;
  }
  jobs.run().finally(updateButtons);
}

function addTargets(files) {
  const images = files.filter(isImage);
  if (!images.length) return;
  targets.add(images);
  if (jobs.isCurrent()) run(); // the reference is on the server already: go on
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
  const slider = $("#brush-size");
  const clamped = Math.min(Number(slider.max), Math.max(Number(slider.min), size));
  slider.value = String(clamped);
  $("#brush-size-value").textContent = `${clamped} px`;
  painter.setSize(clamped);
}

const undo = () => (state.mode === "segment" ? painter.undo() : picker.undo());

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
for (const input of document.querySelectorAll("input[name=mode]")) {
  input.addEventListener("change", () => setMode(input.value));
}
$("#tool-brush").addEventListener("click", () => setTool("brush"));
$("#tool-eraser").addEventListener("click", () => setTool("eraser"));
$("#brush-size").addEventListener("input", (event) => setSize(Number(event.target.value)));
$("#undo").addEventListener("click", undo);
$("#clear-mask").addEventListener("click", () => (state.mode === "segment" ? painter.clear() : picker.clear()));
$("#download-reference-mask").addEventListener("click", async () => {
  download(await maskPng(shotMask(state.current)), `${state.current.name.replace(/\.[^.]*$/, "")}.mask.png`);
});
$("#run").addEventListener("click", run);
$("#show-overlay").addEventListener("change", (event) => document.body.classList.toggle("no-overlay", !event.target.checked));
$("#download-coco").addEventListener("click", () => targets.downloadCoco($("#category").value.trim()));
$("#download-matches").addEventListener("click", () => targets.downloadMatches());
$("#clear-targets").addEventListener("click", () => targets.clear());
dropZone($("#reference-panel"), (files) => {
  const [file] = files.filter(isImage);
  if (file) addShot(file, state.shots.length === 0);
});
dropZone($("#targets-panel"), addTargets);
// A file dropped anywhere else must not make the browser navigate away from the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

document.addEventListener("keydown", (event) => {
  if (event.target.matches("input[type=text], input:not([type]), textarea")) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") {
    event.preventDefault();
    undo();
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
setMode("segment");
updateButtons();
showServerState();
document.body.dataset.ready = "true"; // the page's scripts are wired (the browser tests wait on it)
