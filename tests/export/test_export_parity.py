"""Our DINOv3 ViT against transformers' DINOv3ViTModel on the same random weights.

Meta's own model code (facebookresearch/dinov3) is not installable here (not on PyPI), so
transformers' implementation, written independently of ours, is the reference we compare
against. Weights reach our model through both loaders: the HF folder that transformers'
save_pretrained writes, and a Meta-format .pth (whose key bias is non-zero and must be masked,
as HF has none). Real widths and heads of all three sizes; depth cut to 2 for speed; layer
scales of 0.5 so that every block changes the features.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.export_fixtures import meta_state_dict, transformers_features, transformers_model, write_hf_folder

from insid3.export import SIZES
from insid3.export.backbone import checkpoint_backbone

TOLERANCE = 1e-4


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_features_match_transformers_through_both_loaders(tmp_path, size):
    config = dataclasses.replace(SIZES[size], name=f"{size}-2", depth=2)
    state = meta_state_dict(config, seed=7)
    c = config.embed_dim
    for i in range(config.depth):  # a large key bias: the masked-out part must not leak in
        state[f"blocks.{i}.attn.qkv.bias"][c : 2 * c] = torch.randn(c, generator=torch.Generator().manual_seed(i))
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    reference = transformers_features(transformers_model(config, state), pixels, config)

    meta_path = tmp_path / "meta.pth"
    torch.save(state, meta_path)
    hf_folder = write_hf_folder(tmp_path / "hf", config, seed=7)  # same weights, no key bias
    for path in (meta_path, hf_folder):
        model = checkpoint_backbone(config, path, resolution=224).model
        with torch.no_grad():
            ours = model(pixels)
        assert ours.shape == (2, 196, config.embed_dim)
        assert (ours - reference).abs().max().item() <= TOLERANCE, path.name

    # The comparison has teeth: unmasking the key bias, or dropping the last block, is far off.
    model = checkpoint_backbone(config, meta_path, resolution=224).model
    for block in model.blocks:
        block.attn.qkv.bias_mask.fill_(1.0)
    with torch.no_grad():
        assert (model(pixels) - reference).abs().max().item() > 3 * TOLERANCE
        del model.blocks[1]
        assert (model(pixels) - reference).abs().max().item() > 3 * TOLERANCE
