// The page's wiring: the concepts (one in segment and match mode, several in concepts mode), the
// shown concept's reference shots with their painter (segment, concepts mode) or point picker
// (match mode), the target list, keyboard shortcuts, drag and drop, and the jobs against the API.

import { serverState } from "./api.js";
import { ConceptBar, conceptsProblem, drawLegend, newConcept } from "./concepts.js";
import { dropZone, keepDropsOnThePage } from "./drop.js";
import { Jobs } from "./jobs.js";
import { maskPng } from "./masks.js";
import { PointPicker } from "./matching.js";
import { loadShot, Painter, shotMask } from "./painter.js";
import { bundleText, readProfile, settingsText } from "./profile.js";
import { download, TargetList } from "./targets.js";

const $ = (selector) => document.querySelector(selector);
const isImage = (file) => file.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|gif|tiff?)$/i.test(file.name);

const MODES = ["segment", "concepts", "match"];
const first = newConcept([]);
// concept: the shown one (the first outside concepts mode); picked: the one concepts mode shows.
// profile: the loaded calibration profile ({id, name, text, profile}: profile.js) or null.
const state = { mode: "segment", concepts: [first], concept: first, picked: first, profile: null,
  get shots() { return this.concept.shots; }, set shots(shots) { this.concept.shots = shots; },
  get current() { return this.concept.current; }, set current(shot) { this.concept.current = shot; } };

const painter = new Painter({ frame: $("#reference-frame"), cursor: $("#brush-cursor"), onChange: referenceChanged });
const picker = new PointPicker({ frame: $("#reference-frame"), layer: $("#reference-points"), onChange: changed });
const bar = new ConceptBar({ list: $("#concept-list"), template: $("#concept-template"), onPick: showConcept,
  onRename: changed, onRemove: removeConcept });
const targets = new TargetList({ list: $("#targets"), template: $("#target-template"), progress: $("#progress"),
  summary: $("#quality-summary"), onChange: updateButtons });
const jobs = new Jobs({ state, targets, onReferenceError: (error) => showError($("#reference-error"), error) });

function showError(element, error) {
  element.hidden = !error;
  element.querySelector(".message").textContent = error ? error.message : "";
  element.querySelector(".detail").textContent = error?.detail ? `Server: ${error.detail}` : "";
}

// After any edit of what results depend on: results of an earlier version are marked as such.
function changed() {
  for (const mode of MODES) targets.markStale(mode, jobs.version(mode));
  drawLegend($("#legend"), state.concepts);
  showError($("#reference-error"), null);
  updateButtons();
}

function referenceChanged() {
  state.concept.version += 1; // the shown concept's shots or masks changed
  bar.mark(state.concept);
  changed();
}

function updateButtons() {
  const { total, withMask, withMatches, withLabels } = targets.counts();
  const noShot = state.current === null;
  const anyShot = state.mode === "concepts" ? state.concepts.some((concept) => concept.shots.length) : !noShot;
  $("#run").disabled = !anyShot || total === 0;
  $("#run").textContent = state.mode === "match" ? "Match" : "Segment";
  $("#download-coco").disabled = withMask === 0;
  $("#download-concepts-coco").disabled = withLabels === 0;
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
  painter.active = mode !== "match";
  picker.active = mode === "match";
  targets.setMode(mode);
  showConcept(mode === "concepts" && state.concepts.includes(state.picked) ? state.picked : state.concepts[0]);
}

// ---- concepts ----

function showConcept(concept) {
  state.concept = concept;
  if (state.mode === "concepts") state.picked = concept;
  bar.mark(concept);
  selectShot(concept.current);
}

// A new concept starts with the shown image (its mask empty): several concepts on one image.
async function addConcept() {
  const concept = newConcept(state.concepts);
  const shown = state.current;
  if (shown) concept.shots.push(concept.current = await loadShot(shown.file));
  state.concepts.push(concept);
  bar.render(state.concepts, concept);
  showConcept(concept);
  bar.focusName(concept);
}

function removeConcept(concept) {
  if (state.concepts.length < 2) return;
  const index = state.concepts.indexOf(concept);
  state.concepts = state.concepts.filter((c) => c !== concept);
  jobs.drop(concept);
  bar.render(state.concepts, state.concept);
  if (concept === state.concept) showConcept(state.concepts[Math.max(0, index - 1)]);
  else changed();
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
  painter.show(shot, state.mode === "concepts" ? state.concept.colour : undefined);
  picker.show(shot);
  renderShots();
  changed(); // matching uses the shown shot
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
  const problem = state.mode === "concepts" ? conceptsProblem(state.concepts)
    : state.mode === "match" && !state.current?.points.length ? "Click on the reference to place the points to match first."
      : null;
  if (problem) {
    showError($("#reference-error"), new Error(problem));
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

const undo = () => (state.mode === "match" ? picker.undo() : painter.undo());

const onFile = (selector, handler) => $(selector).addEventListener("change", (event) => {
  const files = [...event.target.files];
  event.target.value = ""; // picking the same file again fires again
  if (files.length) handler(files);
});

onFile("#reference-file", ([file]) => addShot(file, true));
onFile("#shot-file", ([file]) => addShot(file, false));
onFile("#target-files", addTargets);
onFile("#target-folder", addTargets);
// ---- the calibration profile: its settings go with every reference the page registers ----

let profiles = 0;
async function loadProfile(file) {
  try {
    setProfile({ id: (profiles += 1), ...(await readProfile(file)) });
  } catch (error) {
    showError($("#reference-error"), error);
  }
}

function setProfile(loaded) {
  state.profile = loaded;
  $("#profile-summary").hidden = !loaded;
  $("#profile-none").hidden = Boolean(loaded);
  $("#clear-profile").hidden = !loaded;
  $("#profile-name").textContent = loaded ? loaded.name : "";
  $("#profile-settings").textContent = loaded ? settingsText(loaded.profile) : "";
  $("#profile-bundle").textContent = loaded ? bundleText(loaded.profile) : "";
  changed(); // results of another profile are marked stale
}

onFile("#profile-file", ([file]) => loadProfile(file));
$("#clear-profile").addEventListener("click", () => setProfile(null));
onFile("#mask-file", ([file]) => painter.loadMask(file).catch((error) => showError($("#reference-error"), error)));
for (const input of document.querySelectorAll("input[name=mode]")) {
  input.addEventListener("change", () => setMode(input.value));
}
$("#tool-brush").addEventListener("click", () => setTool("brush"));
$("#tool-eraser").addEventListener("click", () => setTool("eraser"));
$("#brush-size").addEventListener("input", (event) => setSize(Number(event.target.value)));
$("#undo").addEventListener("click", undo);
$("#clear-mask").addEventListener("click", () => (state.mode === "match" ? picker.clear() : painter.clear()));
$("#download-reference-mask").addEventListener("click", async () => {
  download(await maskPng(shotMask(state.current)), `${state.current.name.replace(/\.[^.]*$/, "")}.mask.png`);
});
$("#run").addEventListener("click", run);
$("#show-overlay").addEventListener("change", (event) => document.body.classList.toggle("no-overlay", !event.target.checked));
$("#download-coco").addEventListener("click", () => targets.downloadCoco($("#category").value.trim()));
$("#download-concepts-coco").addEventListener("click", () => {
  targets.downloadConceptsCoco(state.concepts.map((concept) => concept.name));
});
$("#download-matches").addEventListener("click", () => targets.downloadMatches());
$("#add-concept").addEventListener("click", () => addConcept().catch((error) => showError($("#reference-error"), error)));
$("#clear-targets").addEventListener("click", () => targets.clear());
$("#sort-targets").addEventListener("change", (event) => targets.setView({ sort: event.target.value }));
$("#filter-targets").addEventListener("change", (event) => targets.setView({ filter: event.target.value }));
dropZone($("#reference-panel"), (files) => {
  const [file] = files.filter(isImage);
  if (file) addShot(file, state.shots.length === 0);
});
dropZone($("#targets-panel"), addTargets);
keepDropsOnThePage();

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
  else if (state.mode === "concepts" && /^[1-9]$/.test(key) && state.concepts[Number(key) - 1]) {
    showConcept(state.concepts[Number(key) - 1]);
  }
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
bar.render(state.concepts, first);
setMode("segment");
showServerState();
document.body.dataset.ready = "true"; // the page's scripts are wired (the browser tests wait on it)
