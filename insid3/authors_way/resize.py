"""F.interpolate on one 2-D map, as the authors call it for the masks of §5 and §9."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def interpolate(values: torch.Tensor, size: tuple[int, int], mode: Literal["bilinear", "nearest"]) -> torch.Tensor:
    """(H, W) -> (h, w) float32: the map (a bool mask included) as float32, bilinear with
    align_corners=False or nearest."""
    options = {"align_corners": False} if mode == "bilinear" else {}
    batch = values.float()[None, None]
    return F.interpolate(batch, size=tuple(int(side) for side in size), mode=mode, **options)[0, 0]
