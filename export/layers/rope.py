"""Axial 2-D rotary position embedding of DINOv3, as constant sin/cos tables.

Patch (y, x) gets coordinates in [-1, 1], each axis normalised by its own patch count
("separate"); a head of width D is split into D/4 frequencies for y and D/4 for x, duplicated
("tile 2") so that rotate-half pairs channel i with channel i + D/2. Periods are
base ** (2 i / (D/2)), i < D/4; angles are 2 pi * coord / period, all in fp32 as the hub models.

The tables are computed once per grid in plain torch (never inside the traced graph), so an
exported model holds them as constants: no data-dependent shapes, no `tile`-made `If` nodes.
The CLS and register tokens get rows with cos = 1 and sin = 0: rope_apply then leaves them
exactly unchanged, which spares the graph a split and a concat per layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def rope_periods(*, head_dim: int, base: float) -> torch.Tensor:
    """[D/4] float32 periods, as stored in hub checkpoints (rope_embed.periods)."""
    quarter = head_dim // 4
    exponents = 2 * torch.arange(quarter, dtype=torch.float32) / (head_dim // 2)
    return base**exponents


def patch_coordinates(height: int, width: int) -> torch.Tensor:
    """[h*w, 2] float32 (y, x) patch centres, row-major, each axis mapped to [-1, 1]."""
    coords_y = torch.arange(0.5, height, dtype=torch.float32) / height
    coords_x = torch.arange(0.5, width, dtype=torch.float32) / width
    coords = torch.stack(torch.meshgrid(coords_y, coords_x, indexing="ij"), dim=-1).flatten(0, 1)
    return 2.0 * coords - 1.0


def rope_sin_cos(
    *, height: int, width: int, periods: torch.Tensor, num_prefix_tokens: int, coordinate_scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[prefix + h*w, D] float32 sin and cos tables; prefix rows are sin 0, cos 1 (no rotation).

    coordinate_scale multiplies the [-1, 1] coordinates first (float32), as the hub's training
    mode does with its random per-block rescale; None: eval mode, no rescale."""
    coords = patch_coordinates(height, width)  # [N, 2]
    if coordinate_scale is not None:
        coords = coords * torch.tensor(coordinate_scale, dtype=torch.float32)
    angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # [N, 2, D/4]
    angles = angles.flatten(1, 2).tile(2)  # [N, D]: (y freqs, x freqs) twice
    prefix = torch.zeros(num_prefix_tokens, angles.shape[1], dtype=torch.float32)
    angles = torch.cat([prefix, angles], dim=0)
    return torch.sin(angles), torch.cos(angles)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    # [x0 .. x(D/2-1), xD/2 .. xD-1] -> [-xD/2 .. -xD-1, x0 .. x(D/2-1)]
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def rope_apply(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, D]; sin, cos: [T, D]."""
    return x * cos + rotate_half(x) * sin


class RopeTables(nn.Module):
    """Holds the periods and the sin/cos tables of one grid; computes others on demand (eager)."""

    def __init__(
        self, *, head_dim: int, base: float, num_prefix_tokens: int, grid: tuple[int, int]
    ) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.grid = grid
        # Non-persistent: the periods are checked against a checkpoint's, never loaded from it.
        self.register_buffer("periods", rope_periods(head_dim=head_dim, base=base), persistent=False)
        sin, cos = self._tables(grid)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cos", cos, persistent=False)

    def _tables(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_sin_cos(
            height=grid[0], width=grid[1], periods=self.periods.float().cpu(),
            num_prefix_tokens=self.num_prefix_tokens,
        )

    def forward(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # The branch depends on static shapes only: a traced export sees the constant buffers.
        if grid == self.grid:
            return self.sin, self.cos
        sin, cos = self._tables(grid)
        return sin.to(self.sin.device), cos.to(self.cos.device)
