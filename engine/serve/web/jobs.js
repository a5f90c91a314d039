// Running the targets through the API in the page's mode: the reference the server holds for
// the current shots (registered when first needed, again when it expired), and at most
// IN_FLIGHT targets at once, waiting out a busy server as its Retry-After says.

import {
  ApiError, deleteReference, matchTarget, registerMatchReference, registerReference, segmentConcepts, segmentTarget,
} from "./api.js";
import { readPngValues } from "./labels.js";
import { maskPng } from "./masks.js";
import { shotMask } from "./painter.js";

const IN_FLIGHT = 4; // enough to fill the server's batches, far below its queue
const BUSY_RETRIES = 20;
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const lowerFirst = (text) => text.charAt(0).toLowerCase() + text.slice(1);

export class Jobs {
  // state: the page's {mode, concepts (concepts.js; the first one is segment and match mode's)};
  // targets: the TargetList; onReferenceError(error): a reference the server refused.
  constructor({ state, targets, onReferenceError }) {
    Object.assign(this, { state, targets, onReferenceError, registrations: new Map(), running: false, again: false,
      lastRun: null });
  }

  // What a result depends on: the first concept's shots and masks (segment), the first concept's
  // shown shot and its points (match), or every concept's shots, masks and name (concepts).
  version(mode = this.state.mode) {
    const { concepts } = this.state;
    const shot = concepts[0].current;
    if (mode === "match") return `shot-${shot?.id}-points-${shot?.pointsVersion}`;
    const profile = `profile-${this.state.profile?.id ?? "none"}`; // a new profile: new results
    if (mode === "segment") return `concept-${concepts[0].id}.${concepts[0].version}/${profile}`;
    return `${concepts.map((concept) => `${concept.id}.${concept.version}=${concept.name}`).join("|")}/${profile}`;
  }

  // -> {id, version, forget(), call(target), extra}: the server's reference for this version, and
  // how to run a target on it.
  reference(mode = this.state.mode) {
    if (mode === "match") return this.#matchReference();
    return mode === "segment" ? this.#segmentReference() : this.#conceptsReference();
  }

  // A concept the page no longer has: its reference on the server goes too.
  drop(concept) {
    this.registrations.get(concept.id)?.promise.then((id) => deleteReference(id)).catch(() => null);
    this.registrations.delete(concept.id);
  }

  // The server's reference_id for a concept's shots and masks as they are now, with the page's
  // profile (if one is loaded), registered once per version (the one of an earlier version is
  // deleted). -> the promise of the id
  #registered(concept) {
    const known = this.registrations.get(concept.id);
    const { profile } = this.state;
    const version = `${concept.version}/${profile?.id ?? "none"}`;
    if (known?.version === version) return known.promise;
    const promise = (async () => {
      if (known) known.promise.then((id) => deleteReference(id)).catch(() => null);
      const shots = await Promise.all(concept.shots.map(async (shot) => ({ file: shot.file,
        maskPng: await maskPng(shotMask(shot)) })));
      return (await registerReference(shots, profile?.text ?? null)).reference_id;
    })();
    this.registrations.set(concept.id, { version, promise });
    promise.catch(() => this.#forget(concept, promise));
    return promise;
  }

  #forget(concept, promise) {
    if (this.registrations.get(concept.id)?.promise === promise) this.registrations.delete(concept.id);
  }

  async #segmentReference() {
    const version = this.version("segment");
    const concept = this.state.concepts[0];
    const promise = this.#registered(concept);
    const id = await promise;
    return { id, version, forget: () => this.#forget(concept, promise), call: (target) => segmentTarget(id, target.file),
      extra: {} };
  }

  // Every concept registered (a refusal says which concept), then each target asked for all of them.
  async #conceptsReference() {
    const version = this.version("concepts");
    const concepts = [...this.state.concepts];
    const names = concepts.map((concept) => concept.name);
    const promises = concepts.map((concept) => this.#registered(concept));
    const ids = await Promise.all(promises.map((promise, index) => promise.catch((error) => {
      if (!(error instanceof ApiError)) throw error;
      throw new ApiError(`In the concept “${names[index]}”, ${lowerFirst(error.message)}`, error);
    })));
    const call = async (target) => {
      const answer = await segmentConcepts(ids, names, target.file);
      return { ...answer, label: await readPngValues(answer.labelPng) };
    };
    return { id: ids.join(" "), version, call, extra: { colours: concepts.map((concept) => concept.colour) },
      forget: () => concepts.forEach((concept, index) => this.#forget(concept, promises[index])) };
  }

  // The first concept's shown shot's image, registered once (its points travel with every target).
  async #matchReference() {
    const shot = this.state.concepts[0].current;
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
      this.targets.set(target, mode, "running", mode === "match" ? "Matching…" : "Segmenting…");
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
