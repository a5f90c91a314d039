"""`--format png`: binary mask PNGs (mode L, 0/255, the target's size).

One concept from --ref: <stem>.png. Concepts given by name:
<stem>.<concept>.png each. --overlay adds <stem>.overlay.jpg (one concept: tinted magenta;
several: each in its label-map colour). A target is done when every one of its files exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.job_folder import hold_folder, release_folder
from insid3.engine.jobs.outputs.files import DoneLog, encoded, write_atomically
from insid3.engine.jobs.outputs.options import OutputOptions
from insid3.engine.jobs.outputs.palette import overlay_labels
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.images import load_rgb, overlay_mask


class PngOutputs:
    def __init__(self, folder: Path, options: OutputOptions) -> None:
        hold_folder(folder)  # before reading its log: no other job may write there now
        self.folder, self.options, self.log = folder, options, DoneLog(folder)

    def mask_paths(self, target: Path) -> list[Path]:
        if not self.options.per_concept_files:
            return [self.folder / f"{target.stem}.png"]
        return [self.folder / f"{target.stem}.{name}.png" for name in self.options.names]

    def overlay_path(self, target: Path) -> Path:
        return self.folder / f"{target.stem}.overlay.jpg"

    def done(self, target: Path) -> bool:
        """Every mask exists, and the overlay when one is asked for (a re-run that adds --overlay
        draws the targets segmented without it)."""
        wanted = self.mask_paths(target) + ([self.overlay_path(target)] if self.options.overlay else [])
        return target in self.log and all(path.is_file() for path in wanted)

    def has_outputs(self) -> bool:
        return any(self.folder.glob("*.png"))

    def start(self, *, fresh: bool) -> None:
        """Nothing job-wide but the log of finished targets (another job's is forgotten)."""
        if fresh:
            self.log.forget()

    def write(self, target: Path, result: ConceptsResult) -> None:
        if self.options.overlay:  # before the masks: a target whose masks exist has its overlay
            image = np.asarray(load_rgb(target))
            if len(result) == 1:
                overlay = overlay_mask(image, result.concepts[0].mask)
            else:
                overlay = Image.fromarray(overlay_labels(image, result.label_map()))
            write_atomically(self.overlay_path(target), encoded(overlay, format="JPEG", quality=90))
        for path, concept in zip(self.mask_paths(target), result):
            image = Image.fromarray(concept.mask.astype(np.uint8) * 255)  # L
            write_atomically(path, encoded(image, format="PNG"))
        self.log.add(target)

    def close(self) -> None:
        """Every mask is complete once written; the folder is let go (removed if this job made it
        and wrote nothing there)."""
        self.log.close()
        release_folder(self.folder, unused=not self.log.added)
