// The reference editor: each shot is an image on its stored pixel grid and a mask canvas of the
// same size, painted with a round brush or eraser. The mask canvas holds the paint in its alpha
// channel (maskFromAlpha reads it); the CSS shows it over the image, half transparent.

import { maskFromAlpha } from "./masks.js";
import { storedCanvas } from "./orientation.js";

// Undo keeps full-size snapshots (4 bytes a pixel): at most 30, and at most ~200 MB per shot.
const UNDO_DEPTH = 30;
const UNDO_BYTES = 200 * 2 ** 20;
// Cyan, not the overlays' magenta: what you marked and what was found are told apart at a glance.
// (Concepts mode paints each concept in its own colour: show(shot, colour).)
const PAINT = "rgb(0, 210, 255)";
let shotsLoaded = 0;

export async function loadShot(file) {
  const image = await storedCanvas(file);
  image.className = "shot-image";
  const mask = document.createElement("canvas");
  mask.className = "shot-mask";
  mask.getContext("2d", { willReadFrequently: true }); // undo snapshots read it back after every stroke
  [mask.width, mask.height] = [image.width, image.height];
  shotsLoaded += 1;
  return { id: shotsLoaded, name: file.name, file, image, mask, undo: [], points: [], pointsVersion: 0 }; // points: matching.js
}

export function shotMask(shot) {
  return maskFromAlpha(shot.mask.getContext("2d").getImageData(0, 0, shot.mask.width, shot.mask.height));
}

export class Painter {
  // frame: the element holding the shown shot's two canvases; cursor: the brush outline.
  // onChange(shot): called after every edit of a mask.
  constructor({ frame, cursor, onChange }) {
    Object.assign(this, { frame, cursor, onChange, shot: null, tool: "brush", size: 24, last: null, active: true,
      colour: PAINT });
    frame.addEventListener("pointerdown", (event) => this.#down(event));
    frame.addEventListener("pointermove", (event) => this.#move(event));
    for (const type of ["pointerup", "pointercancel"]) frame.addEventListener(type, (event) => this.#up(event));
    frame.addEventListener("pointerleave", () => { this.cursor.hidden = true; });
  }

  // The shot to edit (null: none), its paint shown and laid on in `colour`.
  show(shot, colour = PAINT) {
    Object.assign(this, { shot, colour });
    this.frame.querySelectorAll("canvas").forEach((canvas) => canvas.remove());
    if (shot) this.frame.prepend(shot.image, shot.mask);
    if (shot) this.#tint();
    this.frame.hidden = !shot;
  }

  setTool(tool) { this.tool = tool; }

  setSize(size) {
    this.size = size;
    Object.assign(this.cursor.style, { width: `${size}px`, height: `${size}px` });
  }

  undo() {
    const snapshot = this.shot?.undo.pop();
    if (!snapshot) return false;
    this.shot.mask.getContext("2d").putImageData(snapshot, 0, 0);
    this.#tint(); // a snapshot from before the shot was shown in another colour
    this.onChange(this.shot);
    return true;
  }

  clear() {
    if (!this.shot) return;
    this.#snapshot();
    this.shot.mask.getContext("2d").clearRect(0, 0, this.shot.mask.width, this.shot.mask.height);
    this.onChange(this.shot);
  }

  // A mask file (any pixel > 0 is foreground, as the engine reads masks) replaces the paint.
  async loadMask(file) {
    const loaded = await storedCanvas(file);
    const { width, height } = this.shot.mask;
    if (loaded.width !== width || loaded.height !== height) {
      throw new Error(`The mask is ${loaded.width}×${loaded.height} pixels but its image is ${width}×${height}.`);
    }
    const pixels = loaded.getContext("2d").getImageData(0, 0, width, height);
    const rgba = pixels.data;
    let coloured = false; // a mask drawn in colour; else (all black) its alpha says what is painted
    for (let i = 0; i < rgba.length && !coloured; i += 4) coloured = rgba[i] || rgba[i + 1] || rgba[i + 2];
    const painted = new ImageData(width, height);
    for (let i = 0; i < rgba.length; i += 4) {
      const on = rgba[i + 3] > 0 && (!coloured || Math.max(rgba[i], rgba[i + 1], rgba[i + 2]) > 0);
      if (on) painted.data.set([0, 210, 255, 255], i);
    }
    this.#snapshot();
    this.shot.mask.getContext("2d").putImageData(painted, 0, 0);
    this.#tint();
    this.onChange(this.shot);
  }

  // Every painted pixel in the current colour, its alpha (what the mask is made of) kept as it is.
  #tint() {
    const context = this.shot.mask.getContext("2d");
    context.save();
    Object.assign(context, { globalCompositeOperation: "source-in", fillStyle: this.colour });
    context.fillRect(0, 0, this.shot.mask.width, this.shot.mask.height);
    context.restore();
  }

  #snapshot() {
    const { mask, undo } = this.shot;
    undo.push(mask.getContext("2d").getImageData(0, 0, mask.width, mask.height));
    const depth = Math.max(3, Math.min(UNDO_DEPTH, Math.floor(UNDO_BYTES / (4 * mask.width * mask.height))));
    while (undo.length > depth) undo.shift();
  }

  // Pointer position on the mask's pixel grid, and how many grid pixels one screen pixel covers.
  #point(event) {
    const rect = this.shot.mask.getBoundingClientRect();
    const scale = this.shot.mask.width / rect.width;
    return { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale, scale };
  }

  #moveCursor(event) {
    const frameRect = this.frame.getBoundingClientRect();
    this.cursor.hidden = false;
    this.cursor.style.left = `${event.clientX - frameRect.left}px`;
    this.cursor.style.top = `${event.clientY - frameRect.top}px`;
    this.cursor.classList.toggle("eraser", this.tool === "eraser");
  }

  #down(event) {
    if (!this.active || !this.shot || event.button !== 0) return;
    event.preventDefault();
    this.frame.setPointerCapture(event.pointerId);
    this.#snapshot();
    this.last = this.#point(event);
    this.#stroke(this.last, this.last);
  }

  #move(event) {
    if (!this.active || !this.shot) return;
    this.#moveCursor(event);
    if (!this.last) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const each of events.length ? events : [event]) {
      const point = this.#point(each);
      this.#stroke(this.last, point);
      this.last = point;
    }
  }

  #up(event) {
    if (!this.last) return;
    this.last = null;
    if (this.frame.hasPointerCapture(event.pointerId)) this.frame.releasePointerCapture(event.pointerId);
    this.onChange(this.shot);
  }

  #stroke(from, to) {
    const context = this.shot.mask.getContext("2d");
    context.globalCompositeOperation = this.tool === "eraser" ? "destination-out" : "source-over";
    Object.assign(context, { strokeStyle: this.colour, fillStyle: this.colour, lineCap: "round", lineJoin: "round" });
    context.lineWidth = this.size * to.scale;
    context.beginPath();
    if (from.x === to.x && from.y === to.y) { // a click: a dot (a zero-length line draws nothing)
      context.arc(to.x, to.y, context.lineWidth / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  }
}
