// The target list: one card per dropped or picked image. Each card keeps one result per mode
// ("segment": a mask; "concepts": a label map and a COCO document; "match": the reference's
// points found in it) with its state (waiting, running, done, failed) and shows the current
// mode's with its quality (score and flags, quality.js); the list is sorted and filtered by them
// (`setView`); downloads are per target or for all.

import { rgbOf } from "./colours.js";
import { labelImageData, labelSummary, mergeCoco } from "./labels.js";
import { cocoInstances, decodeRle, maskArea, maskBbox, maskPng, tintedImageData } from "./masks.js";
import { drawMarkers, matchRecord } from "./matching.js";
import { arrange, passes, qualityOf, qualityText } from "./quality.js";

const OVERLAY_SIDE = 640; // overlays are drawn at most this many pixels wide or high: memory stays small

export function download(blob, fileName) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

const jsonBlob = (data) => new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
const stem = (name) => name.replace(/^.*\//, "").replace(/\.[^.]*$/, "");

const DOWNLOAD_LABEL = { segment: "Mask PNG", concepts: "Label PNG", match: "Points JSON" };

// tinted: ImageData of the image's full size, drawn scaled down to at most OVERLAY_SIDE.
function drawOverlay(canvas, tinted) {
  const { width, height } = tinted;
  const scale = Math.min(1, OVERLAY_SIDE / Math.max(width, height));
  const full = document.createElement("canvas");
  [full.width, full.height] = [width, height];
  full.getContext("2d").putImageData(tinted, 0, 0);
  [canvas.width, canvas.height] = [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false; // a mask's edge stays an edge
  context.drawImage(full, 0, 0, canvas.width, canvas.height);
}

function timingText(timings, batchSize) {
  const total = timings.reduce((sum, [, ms]) => sum + ms, 0);
  const stages = timings.map(([stage, ms]) => `${stage} ${ms < 10 ? ms.toFixed(1) : Math.round(ms)}`);
  const batch = batchSize > 1 ? ` (backbone shared by a batch of ${batchSize})` : "";
  return `${Math.round(total)} ms in all, ms per stage: ${stages.join(" · ")}${batch}`;
}

export class TargetList {
  // summary: where the view's counts go (flagged, hidden by the filter).
  constructor({ list, template, progress, summary, onChange }) {
    Object.assign(this, { list, template, progress, summary, onChange, targets: [], mode: "segment",
      view: { sort: "added", filter: "all" } });
  }

  // How the cards are shown: sort (quality.js SORTS) and filter (FILTERS) by their quality.
  setView(view) {
    this.view = { ...this.view, ...view };
    this.#changed();
  }

  quality(target, mode = this.mode) {
    return qualityOf(this.result(target, mode), mode);
  }

  setMode(mode) {
    this.mode = mode;
    this.targets.forEach((target) => this.#render(target));
    this.#changed();
  }

  add(files) {
    const added = files.map((file) => this.#card(file));
    this.targets.push(...added);
    this.#changed();
    return added;
  }

  result(target, mode = this.mode) {
    return target.results[mode] ?? { state: "new" };
  }

  // Targets without a result of `mode` from the reference of this version, not already queued.
  pending(mode, version) {
    return this.targets.filter((target) => {
      const { state, version: made } = this.result(target, mode);
      return !["waiting", "running"].includes(state) && !(state === "done" && made === version);
    });
  }

  markStale(mode, version) {
    for (const target of this.targets) {
      const result = target.results[mode];
      if (result) result.stale = result.state === "done" && result.version !== version;
      this.#render(target);
    }
  }

  set(target, mode, state, message = "", detail = "") {
    const kept = state === "failed" ? {} : target.results[mode]; // a failure replaces an older result
    if (state === "failed" && mode === "segment") target.card.querySelector(".overlay").width = 0;
    if (state === "failed" && mode === "concepts") target.card.querySelector(".labels").width = 0;
    if (state === "failed" && mode === "match") target.card.querySelector(".markers").replaceChildren();
    target.results[mode] = { ...kept, state, message, detail };
    this.#render(target);
    this.#changed();
  }

  // payload: the API's answer (api.js segmentTarget / segmentConcepts with its decoded label map
  // / matchTarget); extra: the concepts' colours, or what matchRecord needs.
  done(target, mode, payload, version, extra = {}) {
    const result = { state: "done", version, stale: false, message: "", detail: "",
      timings: timingText(payload.timings, payload.batchSize), quality: payload.quality ?? null };
    if (mode === "segment") {
      const mask = decodeRle(payload.rle);
      Object.assign(result, { rle: payload.rle, area: maskArea(mask), bbox: maskBbox(mask) });
      if (!result.area) {
        result.message = result.quality?.absent
          ? "Judged absent: its score is below the profile's min_score, so its mask is empty."
          : "No pixel of this image matches the reference.";
      }
      drawOverlay(target.card.querySelector(".overlay"), tintedImageData(mask));
    } else if (mode === "concepts") {
      Object.assign(result, { labelPng: payload.labelPng, coco: payload.coco,
        message: labelSummary(payload.label, payload.labels) });
      drawOverlay(target.card.querySelector(".labels"), labelImageData(payload.label, extra.colours.map(rgbOf)));
    } else {
      result.record = matchRecord({ ...extra, target: target.fileName, answer: payload });
      const titles = payload.peak_similarity.map((peak, i) => `point ${i + 1}: peak similarity ${peak.toFixed(3)}`);
      drawMarkers(target.card.querySelector(".markers"), payload.points, payload.size, titles);
    }
    target.results[mode] = result;
    this.#render(target);
    this.#changed();
  }

  async downloadResult(target) {
    const result = this.result(target);
    if (result.rle) download(await maskPng(decodeRle(result.rle)), `${stem(target.fileName)}.png`);
    if (result.labelPng) download(result.labelPng, `${stem(target.fileName)}.png`); // the server's file as it came
    if (result.record) download(jsonBlob(result.record), `${stem(target.fileName)}.json`);
  }

  // Every target that has a mask, in the list's order.
  downloadCoco(category) {
    const records = this.targets.map((t) => ({ fileName: t.fileName, ...t.results.segment })).filter((r) => r.rle);
    download(jsonBlob(cocoInstances(records, category || "object")), "masks.coco.json");
  }

  // Every target's concepts as one COCO file, the categories `names` (the page's concepts) first.
  downloadConceptsCoco(names) {
    const entries = this.targets.filter((t) => t.results.concepts?.coco)
      .map((t) => ({ fileName: t.fileName, coco: t.results.concepts.coco }));
    download(jsonBlob(mergeCoco(entries, names)), "concepts.coco.json");
  }

  // Every target's matches: a list of insid3-match's per-target records.
  downloadMatches() {
    download(jsonBlob(this.targets.map((t) => t.results.match?.record).filter(Boolean)), "matches.json");
  }

  remove(target) {
    URL.revokeObjectURL(target.card.querySelector("img").src);
    target.card.remove();
    this.targets = this.targets.filter((t) => t !== target);
    this.#changed();
  }

  clear() {
    const busy = (t) => Object.values(t.results).some((r) => r.state === "running");
    for (const target of this.targets.filter((t) => !busy(t))) this.remove(target);
  }

  counts() {
    const count = (...states) => this.targets.filter((t) => states.includes(this.result(t).state)).length;
    return { total: this.targets.length, done: count("done"), failed: count("failed"), busy: count("running", "waiting"),
      withMask: this.targets.filter((t) => t.results.segment?.rle).length,
      withLabels: this.targets.filter((t) => t.results.concepts?.coco).length,
      withMatches: this.targets.filter((t) => t.results.match?.record).length };
  }

  #card(file) {
    const card = this.template.content.firstElementChild.cloneNode(true);
    const target = { file, fileName: file.webkitRelativePath || file.name, card, results: {} };
    card.querySelector(".name").textContent = target.fileName;
    card.querySelector(".name").title = target.fileName;
    const image = card.querySelector("img");
    image.src = URL.createObjectURL(file);
    image.alt = target.fileName;
    card.querySelector(".download").addEventListener("click", () => this.downloadResult(target));
    card.querySelector(".remove").addEventListener("click", () => {
      if (this.result(target).state !== "running") this.remove(target);
    });
    this.list.append(card);
    this.#render(target);
    return target;
  }

  #render(target) {
    const { card } = target;
    const result = this.result(target);
    card.dataset.state = result.state;
    card.classList.toggle("stale", Boolean(result.stale));
    card.querySelector(".status").textContent = result.message ?? "";
    const detail = card.querySelector(".detail");
    detail.textContent = result.detail ? `Server: ${result.detail}` : "";
    detail.hidden = !result.detail;
    card.querySelector(".timings").textContent = result.state === "done" ? result.timings : "";
    const quality = this.quality(target);
    card.querySelector(".quality").textContent = qualityText(quality);
    card.querySelector(".quality").hidden = !quality;
    card.dataset.score = quality ? String(quality.score) : "";
    card.dataset.flags = quality ? quality.flags.join(" ") : "";
    card.querySelector(".download").disabled = !(result.rle || result.labelPng || result.record);
    card.querySelector(".download").textContent = DOWNLOAD_LABEL[this.mode];
  }

  // The cards in the view's order, those the filter leaves out hidden (match mode: as added, all).
  #arrange() {
    const byQuality = this.mode !== "match";
    const entries = this.targets.map((target) => ({ target, quality: byQuality ? this.quality(target) : null }));
    const ordered = byQuality ? arrange(entries, this.view.sort) : entries;
    ordered.forEach(({ target }, index) => {
      if (this.list.children[index] !== target.card) this.list.insertBefore(target.card, this.list.children[index]);
    });
    let hidden = 0;
    for (const { target, quality } of entries) {
      target.card.hidden = byQuality && !passes(quality, this.view.filter);
      hidden += target.card.hidden;
    }
    const flagged = entries.filter(({ quality }) => quality?.flags.length).length;
    return { flagged, hidden };
  }

  #changed() {
    const { total, done, failed, busy } = this.counts();
    const { flagged, hidden } = this.#arrange();
    const verb = this.mode === "match" ? "matched" : "segmented";
    this.progress.textContent = total === 0 ? "No targets yet."
      : `${done} of ${total} ${verb}${failed ? ` · ${failed} failed` : ""}${busy ? ` · ${busy} in progress` : ""}`;
    if (this.summary) this.summary.textContent = `${flagged} flagged${hidden ? ` · ${hidden} hidden` : ""}`;
    this.onChange();
  }
}
