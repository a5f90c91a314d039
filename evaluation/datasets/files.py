"""Reading the datasets' files as the authors' loaders read them, with one-line errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from insid3.engine.runtime.rendering import render_rgb
from insid3.evaluation.datasets.base import DatasetError, require_file


def read_pickle(path: str | Path, what: str) -> Any:
    path = require_file(path, what)
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types on a bad file
        raise DatasetError(f"{what} {path} is not a readable pickle ({exc.__class__.__name__}: {exc})") from None


def read_json(path: str | Path, what: str) -> Any:
    path = require_file(path, what)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {path} is not valid JSON ({exc})") from None


def open_image(path: str | Path, what: str) -> Image.Image:
    """The file decoded by PIL, as opened (no mode conversion)."""
    path = require_file(path, what)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from None


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 after PIL's convert('RGB'), as every loader but iSAID's reads its images."""
    return np.asarray(open_image(path, what).convert("RGB"))


def read_rendered(path: str | Path, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 of an image passed to the model as opened (iSAID): what the engine makes of it."""
    return np.asarray(render_rgb(open_image(path, what)))


def read_label_map(path: str | Path, what: str = "label map") -> np.ndarray:
    """np.array(Image.open(path)): the stored values, no mode conversion; must be 2-D."""
    values = np.array(open_image(path, what))
    if values.ndim != 2:
        raise DatasetError(f"{what} {path} has shape {values.shape}: a single-channel label map is expected")
    return values


def read_grey_mask(path: str | Path, what: str = "mask") -> np.ndarray:
    """convert('L') >= 128, the rule of ISIC, Chest X-ray and SUIM masks."""
    return np.asarray(open_image(path, what).convert("L")) >= 128


def check_same_size(rgb: np.ndarray, mask: np.ndarray, image: str, annotation: str) -> None:
    if rgb.shape[:2] != mask.shape:
        raise DatasetError(
            f"mask {annotation} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {image} is "
            f"{rgb.shape[1]}x{rgb.shape[0]}"
        )


def crop(array: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """array[y0:y1, x0:x1] with Python's slice rules (end-exclusive, clamped, negatives wrap)."""
    if box is None:
        return array
    y0, y1, x0, x1 = box
    return array[y0:y1, x0:x1]
