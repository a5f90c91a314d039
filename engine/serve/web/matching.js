// Keypoint mode: points clicked on the reference shot, and where the server found each of them
// in every target (POST /v1/match). Markers are numbered, one colour per point, and placed in
// percent of their image, so they stay put however the image is scaled on screen.

import { COLOURS } from "./colours.js";

// points: [[x, y], ...] in pixels of an image of size [H, W]; titles: a tooltip per marker.
export function drawMarkers(layer, points, [height, width], titles = []) {
  layer.replaceChildren(...points.map(([x, y], index) => {
    const marker = document.createElement("span");
    marker.className = "marker";
    marker.textContent = String(index + 1);
    Object.assign(marker.style, { left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%` });
    marker.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
    if (titles[index]) marker.title = titles[index];
    return marker;
  }));
}

// How insid3-match's files state their numbers: engine/jobs/match_outputs.py COORDINATES, word for word.
const COORDINATES = "points [x, y] in pixels of their image, x to the right and y down from its top-left corner; "
  + "sizes [width, height]";

// The JSON insid3-match writes per target (engine/jobs/match_outputs.py MatchRecord), for one target;
// sizes come as [H, W] (the API's "size") and are written [width, height], as the file states.
export function matchRecord({ reference, referenceSize: [referenceHeight, referenceWidth], target, points, answer }) {
  const [targetHeight, targetWidth] = answer.size;
  return {
    coordinates: COORDINATES,
    reference, reference_size: [referenceWidth, referenceHeight], target, target_size: [targetWidth, targetHeight],
    debiased: answer.debiased, svd_components: answer.svd_components,
    matches: points.map((source, index) => ({ source, target: answer.points[index],
      peak_similarity: answer.peak_similarity[index] })),
  };
}

export class PointPicker {
  // frame: the element showing the shot (its first canvas is the image); layer: where markers go.
  // onChange(shot): after every added or removed point.
  constructor({ frame, layer, onChange }) {
    Object.assign(this, { frame, layer, onChange, shot: null, active: false });
    frame.addEventListener("click", (event) => this.#click(event));
  }

  show(shot) {
    this.shot = shot;
    this.#draw();
  }

  undo() {
    if (!this.shot?.points.length) return false;
    this.shot.points.pop();
    this.#changed();
    return true;
  }

  clear() {
    if (!this.shot?.points.length) return;
    this.shot.points = [];
    this.#changed();
  }

  #click(event) {
    if (!this.active || !this.shot) return;
    const rect = this.shot.image.getBoundingClientRect();
    const scale = this.shot.image.width / rect.width;
    const x = Math.min(this.shot.image.width, Math.max(0, (event.clientX - rect.left) * scale));
    const y = Math.min(this.shot.image.height, Math.max(0, (event.clientY - rect.top) * scale));
    this.shot.points.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10]);
    this.#changed();
  }

  #changed() {
    this.shot.pointsVersion += 1;
    this.#draw();
    this.onChange(this.shot);
  }

  #draw() {
    if (this.shot) drawMarkers(this.layer, this.shot.points, [this.shot.image.height, this.shot.image.width]);
    else this.layer.replaceChildren();
  }
}
