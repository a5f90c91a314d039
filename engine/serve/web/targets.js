// The target list: one card per dropped or picked image, its state (waiting, segmenting, done,
// failed), its overlay and timings, and the masks' downloads (one PNG, or all as COCO).

import { cocoInstances, decodeRle, maskArea, maskBbox, maskPng, tintedImageData } from "./masks.js";

const OVERLAY_SIDE = 640; // overlays are drawn at most this many pixels wide or high: memory stays small

export function download(blob, fileName) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

const stem = (name) => name.replace(/^.*\//, "").replace(/\.[^.]*$/, "");

function drawOverlay(canvas, mask) {
  const scale = Math.min(1, OVERLAY_SIDE / Math.max(mask.width, mask.height));
  const full = document.createElement("canvas");
  [full.width, full.height] = [mask.width, mask.height];
  full.getContext("2d").putImageData(tintedImageData(mask), 0, 0);
  [canvas.width, canvas.height] = [Math.max(1, Math.round(mask.width * scale)), Math.max(1, Math.round(mask.height * scale))];
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
  constructor({ list, template, progress, onChange }) {
    Object.assign(this, { list, template, progress, onChange, targets: [], nextId: 1 });
  }

  add(files) {
    const added = files.map((file) => this.#card(file));
    this.targets.push(...added);
    this.#changed();
    return added;
  }

  // Targets without a mask from the reference of this version, not already being segmented.
  pending(version) {
    return this.targets.filter((t) => !["waiting", "running"].includes(t.state) && !(t.state === "done" && t.version === version));
  }

  markStale(version) {
    for (const target of this.targets) target.card.classList.toggle("stale", target.state === "done" && target.version !== version);
  }

  set(target, state, message = "", detail = "") {
    Object.assign(target, { state });
    target.card.dataset.state = state;
    target.card.querySelector(".status").textContent = message;
    const detailLine = target.card.querySelector(".detail");
    detailLine.textContent = detail ? `Server: ${detail}` : "";
    detailLine.hidden = !detail;
    this.#changed();
  }

  done(target, { rle, timings, batchSize }, version) {
    const mask = decodeRle(rle);
    Object.assign(target, { rle, version, area: maskArea(mask), bbox: maskBbox(mask) });
    drawOverlay(target.card.querySelector(".overlay"), mask);
    target.card.querySelector(".timings").textContent = timingText(timings, batchSize);
    target.card.querySelector(".download").disabled = false;
    target.card.classList.remove("stale");
    this.set(target, "done", target.area ? "" : "No pixel of this image matches the reference.");
  }

  async downloadPng(target) {
    download(await maskPng(decodeRle(target.rle)), `${stem(target.fileName)}.png`);
  }

  // Every target that has a mask, in the list's order.
  downloadCoco(category) {
    const records = this.targets.filter((t) => t.rle).map(({ fileName, rle, area, bbox }) => ({ fileName, rle, area, bbox }));
    const coco = cocoInstances(records, category || "object");
    download(new Blob([JSON.stringify(coco)], { type: "application/json" }), "masks.coco.json");
  }

  remove(target) {
    URL.revokeObjectURL(target.card.querySelector("img").src);
    target.card.remove();
    this.targets = this.targets.filter((t) => t !== target);
    this.#changed();
  }

  clear() {
    for (const target of [...this.targets]) if (target.state !== "running") this.remove(target);
  }

  counts() {
    const count = (state) => this.targets.filter((t) => t.state === state).length;
    return { total: this.targets.length, done: count("done"), failed: count("failed"),
      busy: count("running") + count("waiting"), withMask: this.targets.filter((t) => t.rle).length };
  }

  #card(file) {
    const card = this.template.content.firstElementChild.cloneNode(true);
    const target = { id: this.nextId++, file, fileName: file.webkitRelativePath || file.name, card, state: "new" };
    card.dataset.state = "new";
    card.querySelector(".name").textContent = target.fileName;
    card.querySelector(".name").title = target.fileName;
    const image = card.querySelector("img");
    image.src = URL.createObjectURL(file);
    image.alt = target.fileName;
    card.querySelector(".download").addEventListener("click", () => this.downloadPng(target));
    card.querySelector(".remove").addEventListener("click", () => { if (target.state !== "running") this.remove(target); });
    this.list.append(card);
    return target;
  }

  #changed() {
    const { total, done, failed, busy } = this.counts();
    this.progress.textContent = total === 0 ? "No targets yet."
      : `${done} of ${total} segmented${failed ? ` · ${failed} failed` : ""}${busy ? ` · ${busy} in progress` : ""}`;
    this.onChange();
  }
}
