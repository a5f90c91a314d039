"""The authors' model: the bundle's backbone rebuilt in torch eager, and its forward pass (§2).

The backbone is the exact one the bundle was exported from (metadata.arch + metadata.weights,
rebuilt by insid3.export.build_backbone); the positional basis of §3 is the bundle's own, cut
to s = svd_components columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.timing import no_sync
from insid3.format.bundle import load_bundle
from insid3.format.settings import Hyperparameters


@dataclass(frozen=True)
class AuthorsModel:
    """The eager backbone and everything fixed per backbone and resolution."""

    backbone: Any  # torch.nn.Module: pixels (B, 3, R, R) -> L2-normalised features (B, N, C)
    basis: torch.Tensor  # (C, s): the positional subspace, §3
    resolution: int
    patch_grid: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hyperparameters: Hyperparameters
    device: str

    def synchronizer(self) -> Callable[[], None]:
        """The stage-boundary synchronisation for this model's device (a no-op on the CPU)."""
        return torch.cuda.synchronize if self.device.startswith("cuda") else no_sync


def load_model(
    bundle_path: str | Path, device: str = "cpu", hyperparameters: Hyperparameters | None = None
) -> AuthorsModel:
    """The bundle's exact backbone (metadata.arch + metadata.weights) rebuilt in torch."""
    from insid3.export import build_backbone  # the torch model definition, only needed here

    bundle = load_bundle(bundle_path)
    meta = bundle.metadata
    hp = (hyperparameters or meta.defaults).validated(meta.embed_dim)
    backbone = build_backbone(meta.arch, meta.weights, resolution=meta.resolution).eval().to(device)
    basis = torch.from_numpy(bundle.positional_basis()[:, : hp.svd_components].copy()).to(device)
    return AuthorsModel(
        backbone=backbone, basis=basis, resolution=meta.resolution, patch_grid=meta.patch_grid,
        mean=meta.mean, std=meta.std, hyperparameters=hp, device=device,
    )


def encode_together(model: AuthorsModel, images: Sequence[PreparedImage]) -> torch.Tensor:
    """§2 for the references and the target in one eager pass: (S + 1, N, C), target last."""
    pixels = torch.from_numpy(np.stack([image.pixels for image in images])).to(model.device)
    with torch.inference_mode():
        return model.backbone(pixels)
