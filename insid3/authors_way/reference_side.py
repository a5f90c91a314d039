"""§5 the reference side: each shot's mask on the patch grid, and the prototype."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from insid3.authors_way.resize import interpolate


def downsample_mask(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """R x R bool -> (h, w) bool: bilinear > 0.5; if empty, nearest > 0.5; if still empty, the
    patch under the centroid of the mask's pixels (float32 mean divided by R // w, truncated)."""
    small = interpolate(mask, grid, "bilinear") > 0.5
    if not small.any():
        small = interpolate(mask, grid, "nearest") > 0.5
        if not small.any():
            centroid = torch.argwhere(mask).float().mean(dim=0)
            row, column = (centroid / (mask.shape[-1] // grid[1])).int().tolist()
            small[row, column] = True
    return small


def prototype(reference_debiased: torch.Tensor, patch_masks: torch.Tensor) -> torch.Tensor:
    """normalise(mean over shots of each shot's mean debiased foreground feature): (S, N, C)
    features and (S, N) bool patch masks -> (C,); a shot with an empty patch mask is skipped."""
    shot_means = [features[mask].mean(dim=0) for features, mask in zip(reference_debiased, patch_masks) if mask.any()]
    return F.normalize(torch.stack(shot_means).mean(dim=0), dim=0)
