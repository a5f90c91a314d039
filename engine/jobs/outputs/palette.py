"""Label colours: the PASCAL VOC colour map (label 0 black; the bits of each label spread over the
high bits of red, green and blue), the palette most tools expect of an indexed label PNG."""

from __future__ import annotations

import numpy as np


def label_colors(count: int) -> np.ndarray:
    """(count, 3) uint8 colours of labels 0 .. count - 1."""
    colors = np.zeros((count, 3), dtype=np.uint8)
    for label in range(count):
        value, red, green, blue = label, 0, 0, 0
        for shift in range(7, -1, -1):  # label bits 0, 3, 6, ... go to red's bit 7, 6, 5, ...
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colors[label] = red, green, blue
    return colors


def overlay_labels(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The RGB (H, W, 3) uint8 image with each labelled pixel blended half and half with its label's colour."""
    colors = label_colors(int(label.max()) + 1).astype(np.float32)
    tinted = image.astype(np.float32)
    on = label > 0
    tinted[on] = 0.5 * tinted[on] + 0.5 * colors[label[on]]
    return tinted.astype(np.uint8)
