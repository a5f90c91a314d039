"""What every writer shares: encoding an image in memory, atomic writes, and leftovers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from insid3.engine.job_manifest import write_atomically

__all__ = ["encoded", "mask_bbox", "remove_temporaries", "write_atomically"]


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
