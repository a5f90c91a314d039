"""Loading Meta hub .pth and Hugging Face folders: detection, renaming, validation, errors."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file
from support.export_fixtures import TINY, meta_state_dict, write_hf_folder, write_meta_checkpoint

from insid3.errors import CheckpointError
from insid3.export import SIZES, VitConfig
from insid3.export.checkpoint import load_checkpoint, weights_sha256
from insid3.export.checkpoint_names import expected_shapes


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_meta_checkpoint_loads_with_its_own_bias_mask(tmp_path):
    path = write_meta_checkpoint(tmp_path / "dinov3_tiny.pth", TINY, seed=0)
    loaded = load_checkpoint(path, TINY)
    state = meta_state_dict(TINY, seed=0)
    assert set(loaded.state_dict) == set(expected_shapes(TINY))  # mask_token and periods dropped
    assert all(torch.equal(loaded.state_dict[k], state[k]) for k in loaded.state_dict)
    assert loaded.source.kind == "meta-hub"
    assert loaded.source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("prefix", ["model.layer.", "layer."])
def test_hf_folder_loads_with_either_layer_prefix(tmp_path, prefix):
    folder = write_hf_folder(tmp_path / "hf", TINY, seed=0)
    if prefix == "layer.":  # checkpoints saved by older transformers releases
        tensors = load_file(folder / "model.safetensors")
        save_file({k.replace("model.layer.", "layer."): v for k, v in tensors.items()}, folder / "model.safetensors")
    loaded = load_checkpoint(folder, TINY)
    meta = meta_state_dict(TINY, seed=0)
    c = TINY.embed_dim
    for name in ("cls_token", "storage_tokens", "blocks.1.attn.qkv.weight", "blocks.0.ls2.gamma", "norm.bias"):
        torch.testing.assert_close(loaded.state_dict[name], meta[name], rtol=0, atol=0)
    bias = loaded.state_dict["blocks.0.attn.qkv.bias"]
    masked = meta["blocks.0.attn.qkv.bias"] * meta["blocks.0.attn.qkv.bias_mask"]
    assert torch.equal(bias, masked) and torch.all(bias[c : 2 * c] == 0)  # HF has no key bias
    assert loaded.source.kind == "huggingface"
    assert loaded.source.sha256 == weights_sha256(folder) == weights_sha256(folder / "model.safetensors")


def test_real_small_checkpoint_given_as_base_names_its_size(tmp_path):
    path = write_meta_checkpoint(tmp_path / "dinov3_vits16.pth", SIZES["small"], seed=0)
    with pytest.raises(CheckpointError) as exc_info:
        load_checkpoint(path, SIZES["base"])
    message = _one_line(exc_info)
    assert "holds a 384 wide, 12 deep, 6 heads model (ViT-S: --size small), not base (768 wide" in message


def test_hf_folder_of_another_size_names_its_size(tmp_path):
    folder = write_hf_folder(tmp_path / "hf", TINY, seed=0)
    wider = VitConfig(name="wide", embed_dim=256, depth=2, num_heads=4)
    with pytest.raises(CheckpointError, match="holds a 128 wide, 2 deep, 2 heads model, not wide"):
        load_checkpoint(folder, wider)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("blocks.1.mlp.fc1.bias"), "missing blocks.1.mlp.fc1.bias"),
    (lambda s: s.pop("blocks.0.attn.qkv.bias_mask"), "missing blocks.0.attn.qkv.bias_mask"),
    (lambda s: s.pop("rope_embed.periods"), "missing rope_embed.periods"),
    (lambda s: s.update({"local_cls_norm.weight": torch.ones(128)}), "unexpected local_cls_norm.weight"),
    (lambda s: s.update({"blocks.0.mlp.fc1.weight": torch.zeros(256, 128)}),
     r"blocks.0.mlp.fc1.weight is \(256, 128\), expected \(512, 128\)"),
    (lambda s: s.update({"blocks.0.attn.qkv.bias_mask": torch.full((384,), float("nan"))}), "only 0 and 1"),
    (lambda s: s.update({"rope_embed.periods": torch.ones(16)}), "rope_embed.periods"),
])
def test_meta_checkpoint_problems_are_named(tmp_path, edit, message):
    state = meta_state_dict(TINY, seed=0)
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message) as exc_info:
        load_checkpoint(tmp_path / "bad.pth", TINY)
    _one_line(exc_info)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth", TINY)


def test_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint") as exc_info:
        load_checkpoint(tmp_path / "notes.pth", TINY)
    _one_line(exc_info)


def test_corrupt_zip_is_not_a_checkpoint(tmp_path):
    path = write_meta_checkpoint(tmp_path / "good.pth", TINY, seed=0)
    assert zipfile.is_zipfile(path)
    data = path.read_bytes()
    (tmp_path / "corrupt.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint") as exc_info:
        load_checkpoint(tmp_path / "corrupt.pth", TINY)
    _one_line(exc_info)


def test_pickle_of_something_else(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        load_checkpoint(tmp_path / "other.pth", TINY)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "linear.pth")
    with pytest.raises(CheckpointError, match="not a DINOv3 checkpoint"):
        load_checkpoint(tmp_path / "linear.pth", TINY)


def test_hf_folder_problems(tmp_path):
    folder = write_hf_folder(tmp_path / "hf", TINY, seed=0)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "use_gated_mlp": True}))
    with pytest.raises(CheckpointError, match="use_gated_mlp=True"):
        load_checkpoint(folder, TINY)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_checkpoint(folder, TINY)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(folder, TINY)


def test_corrupt_safetensors(tmp_path):
    folder = write_hf_folder(tmp_path / "hf", TINY, seed=0)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="is not a safetensors file") as exc_info:
        load_checkpoint(folder, TINY)
    _one_line(exc_info)


def test_hf_names_in_a_pth_point_to_the_folder_format(tmp_path):
    tensors = load_file(write_hf_folder(tmp_path / "hf", TINY, seed=0) / "model.safetensors")
    torch.save(tensors, tmp_path / "hf_names.pth")
    with pytest.raises(CheckpointError, match="Hugging Face tensor names"):
        load_checkpoint(tmp_path / "hf_names.pth", TINY)
