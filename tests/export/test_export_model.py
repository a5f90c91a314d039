"""The export-friendly DINOv3 ViT: config, RoPE tables, forward contract, random init, build_backbone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from support.export_fixtures import TINY, write_meta_checkpoint

from insid3.errors import CheckpointError, SettingsError
from insid3.export import SIZES, VitConfig, build_backbone
from insid3.export.checkpoint_names import expected_shapes
from insid3.export.config import config_for, default_svd_components, validate_resolution
from insid3.export.layers.rope import rope_periods, rope_sin_cos
from insid3.export.random_init import random_state_dict
from insid3.export.vit import DinoVisionTransformer
from insid3.format.bundle import WeightsSource


def test_presets_match_the_hub_architectures():
    assert [(c.embed_dim, c.depth, c.num_heads, c.head_dim) for c in SIZES.values()] == [
        (384, 12, 6, 64), (768, 12, 12, 64), (1024, 24, 16, 64)
    ]
    assert [c.arch for c in SIZES.values()] == ["dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16"]
    for config in SIZES.values():
        assert (config.patch_size, config.num_register_tokens, config.mlp_dim) == (16, 4, 4 * config.embed_dim)
        assert (config.rope_base, config.layer_norm_eps) == (100.0, 1e-5)


def test_arch_string_round_trips_for_presets_and_custom_configs():
    assert VitConfig.from_arch("dinov3_vitl16") is SIZES["large"]
    rebuilt = VitConfig.from_arch(TINY.arch)
    assert dataclasses.replace(rebuilt, name=TINY.name) == TINY
    assert config_for("base") is SIZES["base"] and config_for(TINY) is TINY
    with pytest.raises(SettingsError, match="unknown size 'huge'"):
        config_for("huge")
    with pytest.raises(SettingsError, match="unknown architecture"):
        VitConfig.from_arch("dinov3_vit7b16")


def test_config_rejects_heads_that_rope_cannot_split():
    with pytest.raises(SettingsError, match="multiple of 4"):
        VitConfig(name="odd", embed_dim=120, depth=1, num_heads=4)  # head width 30


@pytest.mark.parametrize("resolution", [224, 768, 1024, 2048])
def test_valid_resolutions(resolution):
    assert validate_resolution(resolution) == resolution


@pytest.mark.parametrize(("resolution", "message"), [
    (770, "not a multiple of the patch size 16"), (208, "out of range"), (2064, "out of range"),
])
def test_invalid_resolutions(resolution, message):
    with pytest.raises(SettingsError, match=message):
        validate_resolution(resolution)


def test_default_svd_components():
    # The paper's 500 for ViT-L; 500/1024 of the width for S and B; clipped below K = min(C, N).
    assert [default_svd_components(SIZES[s], 1024) for s in ("small", "base", "large")] == [188, 375, 500]
    assert default_svd_components(SIZES["large"], 224) == 195  # N = 196 < C
    assert default_svd_components(TINY, 224) == 62  # round(128 * 500 / 1024) = round(62.5)


def test_rope_periods_are_the_hub_buffer():
    periods = rope_periods(head_dim=64, base=100.0)
    assert periods.shape == (16,)
    np.testing.assert_allclose(periods[:3].numpy(), [1.0, 1.3335, 1.7783], atol=1e-4)
    assert periods[-1].item() == pytest.approx(74.99, abs=0.01)


def test_rope_tables_match_transformers_and_leave_prefix_tokens_unrotated():
    from transformers import DINOv3ViTConfig
    from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTRopePositionEmbedding

    config = DINOv3ViTConfig(hidden_size=384, num_attention_heads=6, rope_theta=100.0)
    hf = DINOv3ViTRopePositionEmbedding(config).eval()  # training mode would jitter the coordinates
    hf_cos, hf_sin = hf(torch.zeros(1, 3, 16 * 12, 16 * 10))  # a 12 x 10 grid: axes normalised separately
    sin, cos = rope_sin_cos(height=12, width=10, periods=rope_periods(head_dim=64, base=100.0), num_prefix_tokens=5)
    assert sin.shape == (5 + 120, 64)
    torch.testing.assert_close(cos[5:], hf_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin[5:], hf_sin, atol=1e-6, rtol=0)
    assert torch.all(cos[:5] == 1) and torch.all(sin[:5] == 0)


def test_forward_gives_unit_row_major_patch_features():
    model = build_backbone(TINY, WeightsSource(kind="random-init", seed=0), resolution=224)
    with torch.no_grad():
        features = model(torch.randn(2, 3, 224, 224))
    assert features.shape == (2, 196, 128) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(2, 196))


def test_other_resolutions_compute_their_tables_on_use():
    model = build_backbone(TINY, WeightsSource(kind="random-init", seed=0), resolution=224)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 256, 128)


def test_expected_shapes_are_exactly_the_model_state_dict():
    model = DinoVisionTransformer(SIZES["small"], resolution=224)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_shapes(SIZES["small"])


def test_random_init_is_deterministic_and_seeded():
    first, again, other = (random_state_dict(TINY, seed=s) for s in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["blocks.0.attn.qkv.weight"], other["blocks.0.attn.qkv.weight"])
    mask = first["blocks.1.attn.qkv.bias_mask"]
    assert mask.tolist() == [1.0] * 128 + [0.0] * 128 + [1.0] * 128


def test_build_backbone_rebuilds_a_checkpoint_and_checks_its_sha256(tmp_path):
    from insid3.export.checkpoint import weights_sha256

    path = write_meta_checkpoint(tmp_path / "tiny.pth", TINY, seed=1)
    source = WeightsSource(kind="meta-hub", path=str(path), sha256=weights_sha256(path))
    model = build_backbone(TINY.arch, source, resolution=224)
    state = random_state_dict(TINY, seed=1, layer_scale=0.5)
    torch.testing.assert_close(model.blocks[1].mlp.fc2.weight, state["blocks.1.mlp.fc2.weight"])
    assert not model.training
    with pytest.raises(CheckpointError, match="not the same weights"):
        build_backbone(TINY, dataclasses.replace(source, sha256="0" * 64))
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone(TINY, dataclasses.replace(source, path=str(tmp_path / "gone.pth")))


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, insid3.export as e; assert e.SIZES; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
