"""What every writer shares: encoding an image in memory, atomic writes, leftovers, and the log
of targets this job finished."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.jobs.manifest import write_atomically

__all__ = ["DoneLog", "encoded", "mask_bbox", "remove_temporaries", "write_atomically"]

DONE_FILE = ".insid3-done"


def encoded(image: Image.Image, **options) -> bytes:
    """The image's file bytes (PIL `save` options: format=..., quality=...)."""
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def remove_temporaries(folder: Path) -> None:
    """Temporary files an interrupted run left behind (never mistaken for outputs)."""
    for leftover in folder.rglob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO's [x, y, width, height] of the mask's pixels; zeros for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


class DoneLog:
    """The targets whose files this job wrote, one per line, appended as each is finished.

    A file in the folder counts as done only when this log names its target, so the files of
    another job that --overwrite took the folder from are redone, never trusted by a resume.
    A torn last line (a crash mid-append) is dropped: that target is redone.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / DONE_FILE
        self.targets: set[str] = set()
        if self.path.is_file():
            lines = self.path.read_bytes().split(b"\n")
            complete = lines[:-1]  # the part after the last newline is empty or torn
            self.targets = {line.decode("utf-8", "replace") for line in complete}
            os.truncate(self.path, sum(len(line) + 1 for line in complete))
        self._log = open(self.path, "a", encoding="utf-8")

    def __contains__(self, target: Path) -> bool:
        return str(target) in self.targets

    def forget(self) -> None:
        self.targets.clear()
        self._log.truncate(0)

    def add(self, target: Path) -> None:
        self._log.write(f"{target}\n")
        self._log.flush()
        os.fsync(self._log.fileno())
        self.targets.add(str(target))

    def close(self) -> None:
        self._log.close()
