"""COCO-style segmentations (LVIS, PACO-Part) and Pascal-Part's RLE parts, decoded with
pycocotools exactly as the authors' loaders call it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from insid3.evaluation.datasets.base import DatasetError


def _mask_util():
    try:
        import pycocotools.mask as mask_util
    except ImportError:  # pragma: no cover - pycocotools is in the eval and test extras
        raise DatasetError("this dataset's annotations need pycocotools: pip install 'insid3[eval]'") from None
    return mask_util


# pycocotools 2.0.x warns on every decode under NumPy 2 (its __array__ lacks `copy`): not ours to fix.
_QUIET = {"action": "ignore", "category": DeprecationWarning, "module": "pycocotools"}


def decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """One annotation's mask, (height, width) bool: polygons merged and rasterised, a compressed
    RLE decoded, or a 2-D array taken as it is (the three forms the authors accept)."""
    mask_util = _mask_util()
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        # np.asarray per polygon, as theirs: pycocotools reads a first polygon of exactly four
        # numbers as a box, and so do we.
        rles = mask_util.frPyObjects([np.asarray(p) for p in segmentation], height, width)
        with warnings.catch_warnings():
            warnings.filterwarnings(**_QUIET)
            mask = mask_util.decode(mask_util.merge(rles))
    elif isinstance(segmentation, dict):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(**_QUIET)
                mask = mask_util.decode(segmentation)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises TypeError/ValueError on bad RLEs
            raise DatasetError(f"{where}: cannot decode the RLE segmentation ({exc})") from None
    elif isinstance(segmentation, np.ndarray) and segmentation.ndim == 2:
        mask = segmentation
    else:
        raise DatasetError(
            f"{where}: a segmentation must be polygons, an RLE dict or a 2-D array, got {type(segmentation).__name__}"
        )
    if mask.shape != (height, width):
        raise DatasetError(f"{where}: segmentation of shape {mask.shape} on an image of {height}x{width} (HxW)")
    return mask > 0


def union_of_segmentations(segmentations: Sequence[Any], height: int, width: int, where: str) -> np.ndarray:
    """The OR of several annotations' masks (the authors sum them and keep > 0)."""
    if not segmentations:
        raise DatasetError(f"{where}: no annotation to build a mask from (the authors' loader crashes here)")
    union = np.zeros((height, width), dtype=bool)
    for segmentation in segmentations:
        union |= decode_segmentation(segmentation, height, width, where)
    return union


def decode_part_rles(rles: Sequence[dict], where: str) -> np.ndarray | None:
    """Pascal-Part: the OR of a part's RLE dicts ('counts' a str, ASCII-encoded first), None when
    there is none (the authors then treat the draw as failed)."""
    if not rles:
        return None
    mask_util = _mask_util()
    encoded = []
    for rle in rles:
        counts = rle.get("counts") if isinstance(rle, dict) else None
        if not isinstance(counts, str) or "size" not in rle:
            raise DatasetError(f"{where}: a part mask must be an RLE dict with 'size' and a str 'counts'")
        encoded.append({"size": list(rle["size"]), "counts": counts.encode("ascii")})
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(**_QUIET)
            masks = mask_util.decode(encoded)  # (H, W, n)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{where}: cannot decode the part RLEs ({exc})") from None
    return masks.sum(axis=-1) > 0
