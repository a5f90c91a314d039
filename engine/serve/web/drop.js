// Drag and drop onto the page: files or whole folders (their files, subfolders included).

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

export function dropZone(element, onFiles) {
  element.addEventListener("dragover", (event) => { event.preventDefault(); element.classList.add("dragging"); });
  element.addEventListener("dragleave", () => element.classList.remove("dragging"));
  element.addEventListener("drop", async (event) => {
    event.preventDefault();
    element.classList.remove("dragging");
    onFiles(await droppedFiles(event.dataTransfer));
  });
}

// A file dropped anywhere but on a zone must not make the browser navigate away from the page.
export function keepDropsOnThePage() {
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
}
