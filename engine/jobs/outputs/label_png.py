"""`--format label-png`: one label map per target, <stem>.png, and legend.json for the job.

The map is `ConceptsResult.label_map()` (0 background, i the i-th concept; overlaps by the
higher score, engine/runtime/concepts.py): an indexed PNG (mode P) with the PASCAL VOC palette for up
to 255 concepts, a 16-bit grayscale PNG (mode I;16, no palette) beyond. legend.json lists every
value with its name and colour:

    {"format": "insid3 label map", "background": 0,
     "labels": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                {"value": 1, "name": "cat", "color": [128, 0, 0]}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.job_folder import hold_folder, release_folder
from insid3.engine.jobs.outputs.files import DoneLog, encoded, write_atomically
from insid3.engine.jobs.outputs.options import OutputOptions
from insid3.engine.jobs.outputs.palette import label_colors
from insid3.engine.runtime.concepts import ConceptsResult

LEGEND_FILE = "legend.json"
PALETTE_LIMIT = 255  # labels 0..255 fit one byte


def legend(names: tuple[str, ...]) -> dict:
    colors = label_colors(len(names) + 1).tolist()
    entries = [{"value": value, "name": name, "color": colors[value]}
               for value, name in enumerate(("background", *names))]
    return {"format": "insid3 label map", "background": 0, "labels": entries}


def label_image(label: np.ndarray, concepts: int) -> Image.Image:
    """The PIL image of a label map: mode P with the VOC palette, or I;16 past 255 concepts."""
    if concepts > PALETTE_LIMIT:
        return Image.fromarray(label.astype(np.uint16))  # I;16
    image = Image.fromarray(label.astype(np.uint8))  # L, made P by its palette
    image.putpalette(label_colors(PALETTE_LIMIT + 1).ravel().tolist())
    return image


class LabelPngOutputs:
    def __init__(self, folder: Path, options: OutputOptions) -> None:
        hold_folder(folder)  # before reading its log: no other job may write there now
        self.folder, self.options, self.log = folder, options, DoneLog(folder)

    def done(self, target: Path) -> bool:
        return target in self.log and (self.folder / f"{target.stem}.png").is_file()

    def has_outputs(self) -> bool:
        return any(self.folder.glob("*.png"))

    def start(self, *, fresh: bool) -> None:
        if fresh:  # another job's maps are redone, never trusted
            self.log.forget()
        text = json.dumps(legend(self.options.names), indent=2) + "\n"
        write_atomically(self.folder / LEGEND_FILE, text.encode())

    def write(self, target: Path, result: ConceptsResult) -> None:
        image = label_image(result.label_map(), len(result))
        write_atomically(self.folder / f"{target.stem}.png", encoded(image, format="PNG"))
        self.log.add(target)

    def close(self) -> None:
        """Every map is complete once written; the legend was written at the start. The folder is
        let go (removed if this job made it and wrote no map there)."""
        self.log.close()
        release_folder(self.folder, unused=not self.log.added)
