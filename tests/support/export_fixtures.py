"""Checkpoints in the two formats, tiny configs and a tiny bundle, for the export and engine tests.

- write_meta_checkpoint: a Meta hub `.pth` state dict, the hub's exact names (incl. bias_mask,
  rope_embed.periods, mask_token).
- write_hf_folder: a Hugging Face `DINOv3ViTModel` folder written by transformers' own
  save_pretrained from the same weights (so the names are transformers', not ours).
- make_tiny_bundle: a complete bundle of TINY (2 blocks, 128 wide) with random-init weights.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch

from insid3.export.checkpoint_names import hf_config_dict, meta_to_hf
from insid3.export.config import VitConfig
from insid3.export.random_init import random_state_dict

TINY = VitConfig(name="tiny", embed_dim=128, depth=2, num_heads=2)  # heads of 64, like S/B/L
PARITY_LAYER_SCALE = 0.5  # large enough that every block changes the features


def meta_state_dict(config: VitConfig, seed: int, layer_scale: float = PARITY_LAYER_SCALE) -> dict[str, torch.Tensor]:
    return random_state_dict(config, seed=seed, layer_scale=layer_scale)


def write_meta_checkpoint(path, config: VitConfig, seed: int = 0, layer_scale: float = PARITY_LAYER_SCALE) -> Path:
    path = Path(path)
    torch.save(meta_state_dict(config, seed, layer_scale), path)
    return path


def transformers_model(config: VitConfig, state: dict[str, torch.Tensor]):
    """transformers' DINOv3ViTModel (eval, fp32) holding a Meta-format state dict, converted by name."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    fields = {k: v for k, v in hf_config_dict(config).items() if k not in ("model_type", "architectures")}
    model = DINOv3ViTModel(DINOv3ViTConfig(**fields, image_size=224))
    model.load_state_dict(meta_to_hf(state), strict=True)
    return model.eval().float()


def transformers_features(model, pixel_values: torch.Tensor, config: VitConfig) -> torch.Tensor:
    """[B, N, C] L2-normalised patch tokens of last_hidden_state (CLS and registers dropped)."""
    with torch.no_grad():
        tokens = model(pixel_values=pixel_values).last_hidden_state[:, config.num_prefix_tokens :]
    return torch.nn.functional.normalize(tokens, dim=-1)


def write_hf_folder(path, config: VitConfig, seed: int = 0, layer_scale: float = PARITY_LAYER_SCALE) -> Path:
    path = Path(path)
    transformers_model(config, meta_state_dict(config, seed, layer_scale)).save_pretrained(path)
    return path


_TINY_BUNDLES: dict[tuple[int, int], Path] = {}  # (resolution, seed) -> a pristine export


def make_tiny_bundle(out_dir, resolution: int = 224, seed: int = 0) -> Path:
    """A TINY random-init bundle (ONNX, positional basis, insid3.json; no engine) at
    `out_dir/tiny-<R>-seed<seed>`. Exported once per process per (resolution, seed), then copied.
    """
    from insid3.export.pipeline import ExportSettings, export_bundle

    key = (resolution, seed)
    if key not in _TINY_BUNDLES or not _TINY_BUNDLES[key].is_dir():
        cache_root = tempfile.mkdtemp(prefix="insid3-tiny-bundle-")
        atexit.register(shutil.rmtree, cache_root, ignore_errors=True)
        cache = Path(cache_root) / "bundle"
        settings = ExportSettings(model=TINY, resolution=resolution, out_dir=cache, random_init=True, seed=seed, trt=False)
        _TINY_BUNDLES[key] = export_bundle(settings)
    target = Path(out_dir) / f"tiny-{resolution}-seed{seed}"
    shutil.copytree(_TINY_BUNDLES[key], target)
    return target
