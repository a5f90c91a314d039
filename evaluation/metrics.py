"""The authors' segmentation metric (docs/evaluation.md, "The metric").

Per episode, intersection and union are counted in two bins, background and foreground, on the
comparison grid; ignored pixels (iSAID's boundaries) drop out of every count. They are added,
in episode order, into float32 (2, NC) buffers in the episode's class column, as the authors'
meter does on the GPU (float32 sums stop being exact past 2**24 pixels, so the order matters to
the last bit). mIoU is the mean over the dataset's classes of foreground intersection over
max(union, 1) — a class no episode drew counts 0 — and FB-IoU the mean over the two bins of
the class-summed intersection over the class-summed union (no guard, as theirs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_VALUE = 255.0


@dataclass(frozen=True)
class Counts:
    """One episode's pixel counts, [background, foreground] each (exact integers)."""

    intersection: tuple[int, int]
    union: tuple[int, int]

    def to_json(self) -> dict:
        return {"intersection": list(self.intersection), "union": list(self.union)}

    @classmethod
    def from_json(cls, data: dict) -> "Counts":
        i, u = data["intersection"], data["union"]
        return cls(intersection=(int(i[0]), int(i[1])), union=(int(u[0]), int(u[1])))


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> Counts:
    """Two-bin intersection and union of a bool prediction and a bool ground truth of one shape.

    `ignore` (iSAID) is the authors' ignore map, floor(label / 255): the ground truth becomes
    gt + 255 * ignore and the prediction takes 255 wherever that is 255, so those pixels fall
    outside both bins (the authors count bins with histc over [0, 1], which drops 255).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    p = pred.astype(np.float32)
    g = gt.astype(np.float32)
    if ignore is not None:
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore map {ignore.shape} and ground truth {gt.shape} differ in shape")
        g = g + np.float32(IGNORE_VALUE) * ignore.astype(np.float32)
        p[g == IGNORE_VALUE] = IGNORE_VALUE
    both = p[p == g]

    def bins(values: np.ndarray) -> np.ndarray:
        return np.array([np.count_nonzero(values == 0), np.count_nonzero(values == 1)], dtype=np.int64)

    inter = bins(both)
    union = bins(p) + bins(g) - inter
    return Counts(intersection=(int(inter[0]), int(inter[1])), union=(int(union[0]), int(union[1])))


class IoUMeter:
    """The authors' float32 accumulator over the NC meter columns; scores over `class_ids`."""

    def __init__(self, class_ids: Sequence[int], num_classes: int) -> None:
        ids = [int(c) for c in class_ids]
        if not ids:
            raise ValueError("a meter needs at least one class")
        if min(ids) < 0 or max(ids) >= num_classes:
            raise ValueError(f"class ids must lie in [0, {num_classes}), got {min(ids)}..{max(ids)}")
        self.class_ids = np.asarray(ids, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.intersection = np.zeros((2, num_classes), dtype=np.float32)
        self.union = np.zeros((2, num_classes), dtype=np.float32)

    def update(self, counts: Counts, class_id: int) -> None:
        """Add one episode's counts into column `class_id` (a float32 add per bin, as index_add_)."""
        if not 0 <= class_id < self.num_classes:
            raise ValueError(f"class id {class_id} is outside the meter's {self.num_classes} columns")
        self.intersection[:, class_id] += np.asarray(counts.intersection, dtype=np.float32)
        self.union[:, class_id] += np.asarray(counts.union, dtype=np.float32)

    def iou(self) -> np.ndarray:
        """(2, len(class_ids)) float32: intersection / max(union, 1) per bin and listed class."""
        ones = np.ones_like(self.union)
        iou = self.intersection / np.maximum(self.union, ones)
        return iou[:, self.class_ids]

    def miou(self) -> float:
        """100 x the mean foreground IoU over the listed classes (float32, as the authors)."""
        return float(self.iou()[1].mean(dtype=np.float32) * np.float32(100))

    def fb_iou(self) -> float:
        """100 x the mean over both bins of summed intersection / summed union (NaN when a sum is 0)."""
        inter = self.intersection[:, self.class_ids].sum(axis=1, dtype=np.float32)
        union = self.union[:, self.class_ids].sum(axis=1, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float((inter / union).mean(dtype=np.float32) * np.float32(100))

    def per_class(self) -> list[dict]:
        """[{class_id, intersection, union, iou}] over the listed classes, foreground bin, iou in percent."""
        iou = self.iou()[1]
        return [
            {
                "class_id": int(c),
                "intersection": float(self.intersection[1, c]),
                "union": float(self.union[1, c]),
                "iou": float(iou[i] * np.float32(100)),
            }
            for i, c in enumerate(self.class_ids)
        ]
