"""Where `insid3-segment` puts its masks: one PNG per target, or one COCO instances file.

Both writers are safe to interrupt at any point and resume:
- PNG masks (and overlays) are written to a temporary file and renamed, so a mask that exists
  is complete; a target is done when its mask exists.
- COCO output is journalled: each target's record is appended to `masks.coco.parts.jsonl` and
  flushed as soon as it is computed (a torn last line from a crash is dropped on resume), and
  `masks.coco.json` is rebuilt from the journal when the run ends, however it ends.

`masks.coco.json` is a COCO instances file (`images`, `annotations`, `categories`): one image
entry per target (file_name as given, height, width), one annotation per non-empty mask with
its compressed RLE, area, bbox and iscrowd 0, all in one category.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.images import load_rgb, overlay_mask
from insid3.engine.job_manifest import write_atomically
from insid3.engine.rle import encode_rle

COCO_FILE = "masks.coco.json"
COCO_JOURNAL = "masks.coco.parts.jsonl"


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO's [x, y, width, height] of the mask's pixels; zeros for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _encoded(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def remove_temporaries(folder: Path) -> None:
    """Temporary files an interrupted run left behind (never mistaken for outputs)."""
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


class PngOutputs:
    """<stem>.png per target (0/255, L), optional <stem>.overlay.jpg."""

    def __init__(self, folder: Path, with_overlay: bool) -> None:
        self.folder, self.with_overlay = folder, with_overlay

    def done(self, target: Path) -> bool:
        return (self.folder / f"{target.stem}.png").is_file()

    def has_outputs(self) -> bool:
        return any(self.folder.glob("*.png"))

    def write(self, target: Path, mask: np.ndarray) -> None:
        if self.with_overlay:  # before the mask: a mask that exists has its overlay
            overlay = overlay_mask(np.asarray(load_rgb(target)), mask)
            write_atomically(self.folder / f"{target.stem}.overlay.jpg", _encoded(overlay, format="JPEG", quality=90))
        image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        write_atomically(self.folder / f"{target.stem}.png", _encoded(image, format="PNG"))

    def close(self) -> None:
        """Every mask is complete once written."""


class CocoOutputs:
    """One COCO instances file for the whole job, journalled per target (module docstring)."""

    def __init__(self, folder: Path, category: str) -> None:
        self.path, self.journal_path, self.category = folder / COCO_FILE, folder / COCO_JOURNAL, category
        self.records: dict[str, dict] = self._read_journal()
        self._journal = open(self.journal_path, "a", encoding="utf-8")

    def _read_journal(self) -> dict[str, dict]:
        if not self.journal_path.is_file():
            return {}
        records, good_bytes = {}, 0
        with open(self.journal_path, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    break  # a torn write: this line and anything after it are redone
                records[record["file_name"]] = record
                good_bytes += len(line)
        os.truncate(self.journal_path, good_bytes)
        return records

    def done(self, target: Path) -> bool:
        return str(target) in self.records

    def has_outputs(self) -> bool:
        return bool(self.records) or self.path.is_file()

    def write(self, target: Path, mask: np.ndarray) -> None:
        height, width = mask.shape
        record = {"file_name": str(target), "height": height, "width": width, "area": int(mask.sum()),
                  "bbox": mask_bbox(mask), "segmentation": encode_rle(mask)}
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.records[record["file_name"]] = record

    def coco(self) -> dict:
        images, annotations = [], []
        for image_id, record in enumerate(self.records.values(), start=1):
            images.append({"id": image_id, "file_name": record["file_name"],
                           "height": record["height"], "width": record["width"]})
            if record["area"] > 0:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                    "segmentation": record["segmentation"], "area": record["area"],
                                    "bbox": record["bbox"], "iscrowd": 0})
        return {"info": {"description": "insid3-segment masks"}, "images": images,
                "annotations": annotations, "categories": [{"id": 1, "name": self.category}]}

    def close(self) -> None:
        self._journal.close()
        write_atomically(self.path, (json.dumps(self.coco()) + "\n").encode())
