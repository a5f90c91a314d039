"""The positional basis built with given per-block RoPE rescale factors (insid3-export
--rope-rescale / --rope-rescale-seed), the option behind the published numbers' basis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support.export_fixtures import TINY

from insid3.engine.cli import export as export_cli
from insid3.errors import SettingsError
from insid3.export import build_backbone
from insid3.export.layers.rope import rope_periods, rope_sin_cos
from insid3.export.pipeline import ExportSettings, export_bundle
from insid3.export.positional_basis import positional_basis, read_rope_rescale, rope_rescaled
from insid3.export.rope_rescale import predicted_cuda_factors
from insid3.format.bundle import WeightsSource, load_bundle


@pytest.fixture(scope="module")
def model():
    return build_backbone(TINY, WeightsSource(kind="random-init", seed=0), resolution=224)


def test_rescaled_tables_match_transformers_training_mode():
    """transformers' DINOv3 RoPE in training mode (rescale only): the same tables as ours with
    the factor it drew."""
    from transformers import DINOv3ViTConfig
    from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTRopePositionEmbedding

    config = DINOv3ViTConfig(hidden_size=384, num_attention_heads=6, rope_theta=100.0,
                             pos_embed_shift=None, pos_embed_jitter=None, pos_embed_rescale=2.0)
    hf = DINOv3ViTRopePositionEmbedding(config).train()
    torch.manual_seed(7)
    hf_cos, hf_sin = hf(torch.zeros(1, 3, 16 * 12, 16 * 10))
    torch.manual_seed(7)
    factor = float(torch.empty(1).uniform_(-np.log(2.0), np.log(2.0)).exp())
    assert factor != 1.0
    sin, cos = rope_sin_cos(height=12, width=10, periods=rope_periods(head_dim=64, base=100.0), num_prefix_tokens=5,
                            coordinate_scale=factor)
    torch.testing.assert_close(cos[5:], hf_cos, atol=2e-6, rtol=0)
    torch.testing.assert_close(sin[5:], hf_sin, atol=2e-6, rtol=0)


def test_factors_of_one_give_the_eval_basis_bit_for_bit(model):
    eval_basis = positional_basis(model, 224)
    assert np.array_equal(positional_basis(model, 224, (1.0,) * TINY.depth), eval_basis)


def test_other_factors_move_the_basis_and_restore_the_model(model):
    blocks = model.blocks
    factors = predicted_cuda_factors(TINY.depth, seed=0)
    assert all(0.5 <= f <= 2.0 for f in factors) and len(set(factors)) == TINY.depth
    rescaled = positional_basis(model, 224, factors)
    assert model.blocks is blocks
    assert not np.allclose(rescaled, positional_basis(model, 224), atol=1e-3)
    with rope_rescaled(model, 224, factors) as wrapped:  # block b really uses factor b
        assert wrapped.blocks[1].sin.shape == model.rope_embed.sin.shape
        assert not torch.equal(wrapped.blocks[0].sin, wrapped.blocks[1].sin)


def test_a_wrong_number_of_factors_is_refused(model, tmp_path):
    with pytest.raises(SettingsError, match="one per block"):
        positional_basis(model, 224, (1.0,))
    path = tmp_path / "factors.txt"
    path.write_text("1.0 0.9\n1.1\n")
    with pytest.raises(SettingsError, match="3 factors, but a small backbone has 12 blocks"):
        read_rope_rescale(path, "small", 12)


def test_factor_files_in_three_forms(tmp_path):
    values = [0.75, 1.25, 1.5]
    (tmp_path / "a.json").write_text(json.dumps(values))
    (tmp_path / "b.txt").write_text("0.75\n1.25 1.5\n")
    (tmp_path / "c.json").write_text(json.dumps({"sizes": {"small": {"factors": values}, "large": {"factors": [1.0]}}}))
    for name in ("a.json", "b.txt", "c.json"):
        assert read_rope_rescale(tmp_path / name, "small", 3) == tuple(values)
    with pytest.raises(SettingsError, match="no factors for size 'base'"):
        read_rope_rescale(tmp_path / "c.json", "base", 3)
    with pytest.raises(SettingsError, match="finite and positive"):
        (tmp_path / "d.txt").write_text("1 -1 1")
        read_rope_rescale(tmp_path / "d.txt", "small", 3)


def test_an_export_records_its_factors_and_builds_that_basis(tmp_path, model):
    factors = tuple(predicted_cuda_factors(TINY.depth, seed=3))
    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True, seed=0, trt=False,
                              rope_rescale=factors, rope_rescale_source="test")
    bundle = load_bundle(export_bundle(settings))
    details = bundle.metadata.artifact("positional_basis").details
    assert details["rope_rescale"] == list(factors) and details["rope_rescale_source"] == "test"
    assert np.array_equal(bundle.positional_basis(), positional_basis(model, 224, factors))


def test_the_export_cli_checks_the_factors_before_exporting(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("1 1")
    code = export_cli.main(["--size", "small", "--res", "224", "--random-init", "--rope-rescale", str(tmp_path / "f.txt"),
                            "--out", str(tmp_path / "out")])
    assert code == 2 and "12 blocks" in capsys.readouterr().err and not (tmp_path / "out").exists()
    code = export_cli.main(["--size", "small", "--res", "224", "--random-init", "--rope-rescale", str(tmp_path / "f.txt"),
                            "--rope-rescale-seed", "0"])
    assert code == 2 and "not allowed with" in capsys.readouterr().err


def test_the_seeded_option_is_the_predicted_cuda_stream():
    import argparse

    from insid3.export.config import SIZES

    args = argparse.Namespace(rope_rescale=None, rope_rescale_seed=0)
    factors, source = export_cli.rope_rescale_of(args, SIZES["large"])
    assert factors == tuple(predicted_cuda_factors(24, 0)) and "manual_seed(0)" in source
    assert export_cli.rope_rescale_of(argparse.Namespace(rope_rescale=None, rope_rescale_seed=None), SIZES["large"]) == (None, None)
