"""§9 back to pixels: two bilinear steps, each thresholded."""

from __future__ import annotations

import torch

from insid3.authors_way.resize import interpolate


def upsample(patch_mask: torch.Tensor, resolution: int, original_size: tuple[int, int]) -> torch.Tensor:
    """(h, w) bool -> R x R (bilinear, > 0.5) -> the original (H, W) (bilinear, > 0.5), bool."""
    square = interpolate(patch_mask, (resolution, resolution), "bilinear") > 0.5
    return interpolate(square, original_size, "bilinear") > 0.5
