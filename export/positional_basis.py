"""The positional subspace of a backbone at one resolution (algorithm doc §3).

Features of the all-black image (pixel value 0, then ImageNet-normalised) carry position and
no content: their principal directions are what INSID3 projects out of every feature.

The default is the eval-mode basis. `rope_rescale` gives one factor per block by which that
block's RoPE coordinates are multiplied, as DINOv3's training mode does with random factors:
the authors computed their basis that way (docs/evaluation.md, "The positional basis of the
published numbers"), so their recorded factors reproduce their basis.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from insid3.errors import SettingsError
from insid3.export.layers.rope import rope_sin_cos
from insid3.format.bundle import IMAGENET_MEAN, IMAGENET_STD


def black_image(resolution: int) -> torch.Tensor:
    """[1, 3, R, R] float32: zeros normalised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((torch.zeros(1, 3, resolution, resolution) - mean) / std).contiguous()


class _RescaledRope(nn.Module):
    """A block run with its own RoPE tables instead of the ones the forward pass hands it."""

    def __init__(self, block: nn.Module, sin: torch.Tensor, cos: torch.Tensor) -> None:
        super().__init__()
        self.block, self.sin, self.cos = block, sin, cos

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.sin, self.cos)


@contextmanager
def rope_rescaled(model: nn.Module, resolution: int, factors: Sequence[float]) -> Iterator[nn.Module]:
    """`model` with block b's RoPE coordinates multiplied by factors[b] (restored on exit)."""
    blocks = model.blocks
    if len(factors) != len(blocks):
        raise SettingsError(f"{len(factors)} RoPE rescale factors for a backbone of {len(blocks)} blocks: give one per block")
    if not all(np.isfinite(f) and f > 0 for f in factors):
        raise SettingsError("RoPE rescale factors must be finite and positive")
    rope = model.rope_embed
    grid = model.config.grid(resolution)
    wrapped = []
    for block, factor in zip(blocks, factors):
        sin, cos = rope_sin_cos(height=grid[0], width=grid[1], periods=rope.periods.float().cpu(),
                                num_prefix_tokens=rope.num_prefix_tokens, coordinate_scale=float(np.float32(factor)))
        wrapped.append(_RescaledRope(block, sin, cos))
    model.blocks = nn.ModuleList(wrapped)
    try:
        yield model
    finally:
        model.blocks = blocks


def positional_basis(model: nn.Module, resolution: int, rope_rescale: Sequence[float] | None = None) -> np.ndarray:
    """(C, K) float32, K = min(C, N): all left singular vectors of the centred features, in order."""
    with torch.no_grad():
        if rope_rescale is None:
            features = model(black_image(resolution))[0].double()  # [N, C], L2-normalised per patch
        else:
            with rope_rescaled(model, resolution, rope_rescale) as rescaled:
                features = rescaled(black_image(resolution))[0].double()
    e = features.T.numpy()  # (C, N)
    e = e - e.mean(axis=1, keepdims=True)  # centre across patches
    u, _, _ = np.linalg.svd(e, full_matrices=False)  # u: (C, min(C, N))
    return np.ascontiguousarray(u, dtype=np.float32)



def read_rope_rescale(path, size: str, depth: int) -> tuple[float, ...]:
    """One factor per block from a file: a JSON list, whitespace-separated numbers, or a JSON
    document {"sizes": {size: {"factors": [...]}}} (factors recorded for several sizes)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"--rope-rescale {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
    except ValueError:
        document = text.split()
    if isinstance(document, dict):
        document = (document.get("sizes") or {}).get(size, {}).get("factors")
        if document is None:
            raise SettingsError(f"--rope-rescale {path}: no factors for size {size!r} under 'sizes'")
    try:
        factors = tuple(float(value) for value in document)
    except (TypeError, ValueError):
        raise SettingsError(f"--rope-rescale {path}: expected numbers, one per block") from None
    if len(factors) != depth:
        raise SettingsError(f"--rope-rescale {path}: {len(factors)} factors, but a {size} backbone has {depth} blocks")
    if not all(np.isfinite(f) and f > 0 for f in factors):
        raise SettingsError(f"--rope-rescale {path}: factors must be finite and positive")
    return factors
