"""The comparison grid: where prediction and ground truth are compared (docs/evaluation.md).

"square" is the authors' protocol: the prediction is the R x R mask of algorithm doc §9's first
step (never resized back to the image), and the ground truth (and iSAID's ignore map) is resized
to R x R with torch's legacy nearest rule, then > 0.5. "original" is a second protocol, named
as such and not the paper's: the prediction at the image's own size (the engine's default
output) against the ground truth as stored.
"""

from __future__ import annotations

import numpy as np

from insid3 import kernels
from insid3.kernels.resize import resize_nearest

PROTOCOLS = ("square", "original")


def prediction_size(protocol: str, resolution: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) the prediction is decoded at."""
    if protocol == "square":
        return resolution, resolution
    if protocol == "original":
        return image_size
    raise ValueError(f"unknown grid protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")


def on_grid(mask: np.ndarray, protocol: str, resolution: int) -> np.ndarray:
    """A ground-truth map (bool foreground, or the float ignore map) on the comparison grid.

    Nearest (torch's legacy rule, kernels.resize_nearest) commutes with thresholding, so
    resizing a 0/1 map and comparing with 0.5 afterwards is the same as resizing the bool map.
    """
    if protocol == "original":
        return mask
    prediction_size(protocol, resolution, mask.shape)  # the protocol's name checked
    return kernels.to_numpy(resize_nearest(mask, (resolution, resolution)))
