"""Non-overlapping p x p patches -> tokens, a stride-p convolution."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, *, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixel_values)  # [B, C, h, w]
        return x.flatten(2).transpose(1, 2)  # [B, h*w, C], row-major (y, then x)
