"""Seeded random weights in the Meta hub format, for demos, speed runs and tests.

Deterministic on the CPU: one torch.Generator, tensors drawn in sorted-name order. Never
present features from these weights as quality.
"""

from __future__ import annotations

import torch

from insid3.export.checkpoint_names import expected_shapes
from insid3.export.config import VitConfig
from insid3.export.layers.rope import rope_periods

# Meta initialises LayerScale to 1e-5, which makes every block nearly an identity: the features
# would be the patch embedding alone and carry no positional signal for the basis to find.
# 0.1 lets every block (and RoPE) contribute.
RANDOM_INIT_LAYER_SCALE = 0.1
WEIGHT_STD = 0.02


def hub_bias_mask(dim: int) -> torch.Tensor:
    """(3C,) 1 for q and v, 0 for k: the hub's mask_k_bias."""
    ones = torch.ones(dim)
    return torch.cat([ones, torch.zeros(dim), ones])


def _draw(name: str, shape: tuple[int, ...], generator: torch.Generator, layer_scale: float) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator)
    if name.endswith(".gamma"):
        return layer_scale * (1.0 + 0.25 * noise)
    if "norm" in name and name.endswith(".weight"):
        return 1.0 + 0.1 * noise  # LayerNorm scales near 1, distinct per layer
    return WEIGHT_STD * noise  # projections, biases (the key bias too: it must be masked out)


def random_state_dict(
    config: VitConfig, *, seed: int, layer_scale: float = RANDOM_INIT_LAYER_SCALE
) -> dict[str, torch.Tensor]:
    """A complete Meta-format state dict (with mask_token and rope_embed.periods)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in sorted(expected_shapes(config).items()):
        if name.endswith("bias_mask"):
            state[name] = hub_bias_mask(config.embed_dim)
        else:
            state[name] = _draw(name, shape, generator, layer_scale)
    state["mask_token"] = torch.zeros(1, config.embed_dim)
    state["rope_embed.periods"] = rope_periods(head_dim=config.head_dim, base=config.rope_base)
    return state
