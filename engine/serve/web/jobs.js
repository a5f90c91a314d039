// Running the targets through the API in the page's mode: the reference the server holds for
// the current shots (registered when first needed, again when it expired), and at most
// IN_FLIGHT targets at once, waiting out a busy server as its Retry-After says.

import {
  ApiError, deleteReference, matchTarget, registerMatchReference, registerReference, segmentTarget,
} from "./api.js";
import { maskPng } from "./masks.js";
import { shotMask } from "./painter.js";

const IN_FLIGHT = 4; // enough to fill the server's batches, far below its queue
const BUSY_RETRIES = 20;
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

export class Jobs {
  // state: the page's {mode, shots, current, version}; targets: the TargetList;
  // onReferenceError(error): a reference the server refused.
  constructor({ state, targets, onReferenceError }) {
    Object.assign(this, { state, targets, onReferenceError, registered: null, running: false, again: false,
      lastRun: null });
  }

  // What a result depends on: every shot and mask (segment), or the shown shot and its points (match).
  version(mode = this.state.mode) {
    const shot = this.state.current;
    return mode === "segment" ? `shots-${this.state.version}` : `shot-${shot?.id}-points-${shot?.pointsVersion}`;
  }

  // -> {id, version, call(file)}: the server's reference for this version, and how to run a target on it.
  reference(mode = this.state.mode) {
    return mode === "segment" ? this.#segmentReference() : this.#matchReference();
  }

  #segmentReference() {
    const version = this.version("segment");
    if (this.registered?.version === version) return this.registered.promise;
    const stale = this.registered;
    const promise = (async () => {
      if (stale) stale.promise.then((reference) => deleteReference(reference.id)).catch(() => null);
      const shots = await Promise.all(this.state.shots.map(async (shot) => ({ file: shot.file,
        maskPng: await maskPng(shotMask(shot)) })));
      const { reference_id: id } = await registerReference(shots);
      return { id, version, forget: () => { if (this.registered?.promise === promise) this.registered = null; },
        call: (target) => segmentTarget(id, target.file), extra: {} };
    })();
    this.registered = { version, promise };
    promise.catch(() => { if (this.registered?.promise === promise) this.registered = null; });
    return promise;
  }

  // The shown shot's image, registered once (its points travel with every target).
  async #matchReference() {
    const shot = this.state.current;
    const version = this.version("match");
    const points = shot.points.map((point) => [...point]);
    shot.matchRegistration ??= registerMatchReference(shot.file);
    shot.matchRegistration.catch(() => { shot.matchRegistration = null; });
    const { reference_id: id, size } = await shot.matchRegistration;
    return { id, version, forget: () => { shot.matchRegistration = null; },
      call: (target) => matchTarget(id, points, target.file),
      extra: { reference: shot.name, referenceSize: size, points } };
  }

  async #runOne(target, mode, reference) {
    for (let attempt = 0; ; attempt += 1) {
      this.targets.set(target, mode, "running", mode === "segment" ? "Segmenting…" : "Matching…");
      try {
        this.targets.done(target, mode, await reference.call(target), reference.version, reference.extra);
        return;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (error.status === 503 && error.retryAfterS !== null && attempt < BUSY_RETRIES) {
          this.targets.set(target, mode, "waiting", `${error.message} Trying again in ${error.retryAfterS} s…`);
          await sleep(error.retryAfterS);
        } else if (error.status === 404 && attempt === 0 && reference.version === this.version(mode)) {
          reference.forget(); // expired or evicted on the server: register it again, once
          reference = await this.reference(mode);
        } else {
          this.targets.set(target, mode, "failed", error.message, error.detail);
          return;
        }
      }
    }
  }

  // Every target without a result of the current mode and reference; called again while running,
  // it runs once more when the current round ends.
  async run() {
    if (this.running) { this.again = true; return; }
    this.running = true;
    try {
      do {
        this.again = false;
        const mode = this.state.mode;
        this.lastRun = `${mode}/${this.version(mode)}`;
        let reference;
        try {
          reference = await this.reference(mode);
        } catch (error) {
          this.onReferenceError(error);
          return;
        }
        const queue = this.targets.pending(mode, reference.version);
        queue.forEach((target) => this.targets.set(target, mode, "waiting", "Waiting…"));
        const worker = async () => {
          while (queue.length) {
            const target = queue.shift();
            if (this.targets.targets.includes(target)) await this.#runOne(target, mode, reference);
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      } while (this.again);
    } finally {
      this.running = false;
    }
  }

  // Whether the last run was of this mode and reference: then new targets can go at once.
  isCurrent() {
    return this.lastRun === `${this.state.mode}/${this.version()}`;
  }
}
