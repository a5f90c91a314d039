"""COCO run-length encoding of masks (the format of pycocotools' `mask.encode`).

Runs are counted over the mask in column-major (Fortran) order, starting with a run of zeros;
`counts` is the compressed string form COCO's JSON files use.
"""

from __future__ import annotations

import numpy as np


def run_lengths(mask: np.ndarray) -> list[int]:
    """Alternating run lengths (zeros first) of a bool (H, W) mask in column-major order."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def _compress(counts: list[int]) -> str:
    out = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value  # COCO stores later runs as deltas
        more = True
        while more:
            chunk = x & 0x1F
            x >>= 5
            more = x != -1 if chunk & 0x10 else x != 0
            out.append(chr((chunk | (0x20 if more else 0)) + 48))
    return "".join(out)


def _decompress(text: str) -> list[int]:
    counts: list[int] = []
    position = 0
    while position < len(text):
        x, shift, more = 0, 0, True
        while more:
            chunk = ord(text[position]) - 48
            x |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                x |= -1 << (5 * shift)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> dict:
    """{"size": [H, W], "counts": compressed string} for a bool (H, W) mask."""
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": _compress(run_lengths(mask))}


def decode_rle(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    counts = rle["counts"]
    runs = _decompress(counts) if isinstance(counts, str) else list(counts)
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, size says {height}x{width}")
    return flat.reshape((height, width), order="F")
