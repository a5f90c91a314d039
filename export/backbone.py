"""Building the backbone a bundle was exported from, for export, the torch runtime and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from insid3.errors import CheckpointError
from insid3.export.checkpoint import load_checkpoint, weights_sha256
from insid3.export.config import VitConfig, config_for
from insid3.export.random_init import random_state_dict
from insid3.export.vit import DinoVisionTransformer
from insid3.format.bundle import WeightsSource

DEFAULT_RESOLUTION = 1024


@dataclass(frozen=True)
class Backbone:
    model: DinoVisionTransformer
    source: WeightsSource


def _model_with(config: VitConfig, state: dict[str, torch.Tensor], resolution: int) -> DinoVisionTransformer:
    model = DinoVisionTransformer(config, resolution=resolution)
    # The state has been validated against expected_shapes: strict loading cannot fail on names.
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=True)
    return model.eval().float()


def random_backbone(config: VitConfig, *, seed: int, resolution: int) -> Backbone:
    model = _model_with(config, random_state_dict(config, seed=seed), resolution)
    return Backbone(model, WeightsSource(kind="random-init", seed=seed))


def checkpoint_backbone(config: VitConfig, path, *, resolution: int) -> Backbone:
    loaded = load_checkpoint(path, config)
    return Backbone(_model_with(config, loaded.state_dict, resolution), loaded.source)


def build_backbone(
    config_or_size: VitConfig | str, weights: WeightsSource, *, resolution: int | None = None
) -> torch.nn.Module:
    """The exact fp32 eval model a bundle was exported from.

    config_or_size: a VitConfig, a size ("small"), or a bundle's `metadata.arch`.
    weights: the bundle's `metadata.weights`: a random init is redrawn from its seed; a
    checkpoint is reloaded from its path and must still have the recorded sha256.
    resolution: precomputes the RoPE tables for that input side (others are computed on use).
    """
    config = config_for(config_or_size)
    resolution = resolution or DEFAULT_RESOLUTION
    if weights.kind == "random-init":
        if weights.seed is None:
            raise CheckpointError("random-init weights need a seed to be rebuilt")
        return random_backbone(config, seed=weights.seed, resolution=resolution).model
    if not weights.path:
        raise CheckpointError(f"{weights.kind} weights without a path cannot be rebuilt")
    try:
        actual = weights_sha256(weights.path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"weights file {weights.path} does not exist") from exc
    if weights.sha256 and actual != weights.sha256:
        raise CheckpointError(
            f"{weights.path} has sha256 {actual[:12]}..., the bundle was exported from "
            f"{weights.sha256[:12]}...: not the same weights"
        )
    return checkpoint_backbone(config, weights.path, resolution=resolution).model
