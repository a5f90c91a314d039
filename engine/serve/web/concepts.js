// Concepts mode: several named concepts, each with its own colour and its own shots (images with
// painted masks, painter.js), segmented together in every target (one label map per target).
// The first concept is also what the single-concept segment and match modes use.

import { COLOURS } from "./colours.js";

let conceptsMade = 0;

// A new concept beside `concepts`: the first colour none of them has, and a name none has.
// version counts the edits of its shots and masks (what a registered reference was made from).
export function newConcept(concepts) {
  conceptsMade += 1;
  const colours = new Set(concepts.map((concept) => concept.colour));
  const names = new Set(concepts.map((concept) => concept.name));
  let number = concepts.length + 1;
  while (names.has(`concept ${number}`)) number += 1;
  return { id: conceptsMade, name: `concept ${number}`, shots: [], current: null, version: 0,
    colour: COLOURS.find((colour) => !colours.has(colour)) ?? COLOURS[conceptsMade % COLOURS.length] };
}

// Why the concepts cannot be sent as they are, in words; null when they can.
export function conceptsProblem(concepts) {
  const unnamed = concepts.findIndex((concept) => !concept.name);
  if (unnamed >= 0) return `Concept ${unnamed + 1} has no name: type one in its box.`;
  const twice = concepts.find((concept, index) => concepts.findIndex((c) => c.name === concept.name) !== index);
  if (twice) return `Two concepts are named “${twice.name}”: give each its own name.`;
  const bare = concepts.find((concept) => !concept.shots.length);
  if (bare) return `The concept “${bare.name}” has no reference image yet: pick it and load one.`;
  return null;
}

// entries: [{name, colour}] -> the legend's items.
export function drawLegend(list, entries) {
  list.replaceChildren(...entries.map(({ name, colour }) => {
    const item = document.createElement("li");
    item.style.setProperty("--colour", colour);
    item.textContent = name;
    return item;
  }));
}

// The row of concepts above the reference: pick one (click, or its number key), rename it in
// its box, remove it. Picking and renaming only mark the row (a box keeps its focus and caret);
// render() rebuilds it when concepts come or go.
export class ConceptBar {
  // onPick(concept), onRename(concept), onRemove(concept)
  constructor({ list, template, onPick, onRename, onRemove }) {
    Object.assign(this, { list, template, onPick, onRename, onRemove, items: new Map(), shown: null });
  }

  render(concepts, shown) {
    this.items = new Map(concepts.map((concept, index) => [concept, this.#item(concept, index, concepts.length)]));
    this.list.replaceChildren(...this.items.values());
    this.mark(shown);
  }

  // Which concept is shown, and every concept's count of shots.
  mark(shown) {
    this.shown = shown;
    for (const [concept, item] of this.items) {
      item.classList.toggle("selected", concept === shown);
      const shots = concept.shots.length;
      item.querySelector(".count").textContent = shots === 1 ? "1 shot" : `${shots} shots`;
    }
  }

  focusName(concept) {
    const box = this.items.get(concept)?.querySelector(".concept-name");
    box?.focus();
    box?.select();
  }

  #item(concept, index, count) {
    const item = this.template.content.firstElementChild.cloneNode(true);
    item.style.setProperty("--colour", concept.colour);
    item.title = `Concept ${index + 1}${index < 9 ? ` (key ${index + 1})` : ""}`;
    const pick = () => { if (concept !== this.shown) this.onPick(concept); };
    const name = item.querySelector(".concept-name");
    name.value = concept.name;
    name.setAttribute("aria-label", `name of concept ${index + 1}`);
    name.addEventListener("focus", pick);
    name.addEventListener("input", () => {
      concept.name = name.value.trim();
      this.onRename(concept);
    });
    item.addEventListener("pointerdown", (event) => { if (!event.target.closest(".remove")) pick(); });
    const remove = item.querySelector(".remove");
    remove.disabled = count < 2;
    remove.addEventListener("click", () => this.onRemove(concept));
    return item;
  }
}
