"""insid3-export: every bad input is one line on stderr with a non-zero exit code; the real ViT-S
architecture (all 12 blocks) exported end to end at 224 through the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from support.export_fixtures import TINY, make_tiny_bundle, write_meta_checkpoint

from insid3.engine.cli.export import main
from insid3.export import build_backbone
from insid3.export.onnx_export import run_onnxruntime
from insid3.format.bundle import load_bundle


def _fails(capsys, argv: list[str], message: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("insid3-export: error: ")
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def out(tmp_path) -> str:
    return str(tmp_path / "bundle")


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "huge", "--res", "768", "--random-init"], "invalid choice: 'huge'"),
    (["--size", "small", "--res", "770", "--random-init"], "resolution 770 is not a multiple of the patch size 16"),
    (["--size", "small", "--res", "4096", "--random-init"], "resolution 4096 is out of range [224, 2048]"),
    (["--size", "small", "--res", "208", "--random-init"], "out of range"),
    (["--size", "small", "--res", "big", "--random-init"], "invalid int value: 'big'"),
    (["--size", "small", "--res", "768"], "give --weights PATH or --random-init"),
    (["--size", "small", "--res", "768", "--random-init", "--weights", "x.pth"], "not allowed with argument"),
    (["--size", "small", "--res", "768", "--weights", "x.pth", "--seed", "1"], "--seed only applies to --random-init"),
    (["--size", "small", "--res", "768", "--random-init", "--seed", "-1"], "seed -1 must be >= 0"),
    (["--size", "small", "--res", "768", "--random-init", "--opset", "17"], "opset 17 is not supported"),
    (["--size", "small", "--res", "768", "--random-init", "--max-batch", "0"], "max batch 0"),
    (["--size", "small", "--res", "768", "--random-init", "--precision", "int8"], "invalid choice: 'int8'"),
    (["--size", "small"], "the following arguments are required: --res"),
])
def test_usage_errors(capsys, out, args, message):
    _fails(capsys, [*args, "--out", out], message)
    assert not Path(out).exists()


def test_missing_weights_file(capsys, tmp_path, out):
    _fails(capsys, ["--size", "small", "--res", "224", "--weights", str(tmp_path / "nope.pth"), "--out", out],
           f"weights file {tmp_path / 'nope.pth'} does not exist")


def test_text_file_is_not_a_checkpoint(capsys, tmp_path, out):
    (tmp_path / "readme.pth").write_text("not weights")
    _fails(capsys, ["--size", "small", "--res", "224", "--weights", str(tmp_path / "readme.pth"), "--out", out],
           "is not a PyTorch checkpoint")


def test_corrupt_zip_is_not_a_checkpoint(capsys, tmp_path, out):
    data = write_meta_checkpoint(tmp_path / "good.pth", TINY).read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    _fails(capsys, ["--size", "small", "--res", "224", "--weights", str(tmp_path / "cut.pth"), "--out", out],
           "is not a PyTorch checkpoint: PytorchStreamReader failed reading zip archive")


def test_checkpoint_of_another_size(capsys, tmp_path, out):
    path = write_meta_checkpoint(tmp_path / "tiny.pth", TINY)
    _fails(capsys, ["--size", "small", "--res", "224", "--weights", str(path), "--out", out],
           "holds a 128 wide, 2 deep, 2 heads model, not small (384 wide, 12 deep, 6 heads)")
    assert not Path(out).exists()


def test_output_folder_not_writable(capsys, tmp_path):
    (tmp_path / "a-file").write_text("x")
    _fails(capsys, ["--size", "small", "--res", "224", "--random-init", "--out", str(tmp_path / "a-file" / "b")],
           "is not writable")


def test_existing_bundle_is_refused_without_force(capsys, tmp_path):
    bundle = make_tiny_bundle(tmp_path)
    before = (bundle / "insid3.json").read_text()
    _fails(capsys, ["--size", "small", "--res", "224", "--random-init", "--out", str(bundle)],
           "already holds a bundle: pass --force to replace it")
    assert (bundle / "insid3.json").read_text() == before


def test_a_folder_with_other_files_is_never_overwritten(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _fails(capsys, ["--size", "small", "--res", "224", "--random-init", "--out", str(tmp_path), "--force"],
           "holds no insid3 bundle: refusing to overwrite it")


def test_trt_without_tensorrt(capsys, monkeypatch, out):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    line = _fails(capsys, ["--size", "small", "--res", "224", "--random-init", "--trt", "--out", out], "--trt needs")
    assert line.endswith("--trt needs TensorRT >= 10.13 and a CUDA device: tensorrt is not installed")


def test_installed_entry_point_gives_one_line():
    script = Path(sys.executable).with_name("insid3-export")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "insid3.engine.cli.export"]
    result = subprocess.run([*command, "--size", "huge", "--res", "768", "--random-init"],
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("insid3-export: error: argument --size: invalid choice: 'huge'")


def test_real_small_architecture_end_to_end_at_224(tmp_path):
    """All 12 blocks of ViT-S, through the command line in its own process (~25 s on 2 cores)."""
    out = tmp_path / "dinov3-vits16-224"
    result = subprocess.run(
        [sys.executable, "-m", "insid3.engine.cli.export", "--size", "small", "--res", "224", "--random-init",
         "--seed", "3", "--no-trt", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    for step in ("[1/5] loading random-init (seed 3)", "[2/5] exporting ONNX", "[3/5] checking the ONNX graph",
                 "[4/5] ONNX Runtime vs torch", "[5/5] positional basis", "TensorRT engine skipped: --no-trt"):
        assert step in stdout
    assert f"bundle {out}: DINOv3 small (dinov3_vits16), 224x224, 14x14 patches x 384, svd_components 188" in stdout
    assert "model.onnx: onnx, fp32" in stdout and "total " in stdout

    bundle = load_bundle(out)
    meta = bundle.metadata
    assert (meta.size, meta.embed_dim, meta.patch_grid, meta.weights.seed) == ("small", 384, (14, 14), 3)
    assert bundle.positional_basis().shape == (384, 196)
    assert meta.artifact("onnx").parity["max_abs_error"] <= 1e-4
    graph = onnx.load(str(bundle.onnx_path), load_external_data=False)
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("LayerNormalization") == 25 and not {"If", "Loop"} & set(ops)

    model = build_backbone(meta.arch, meta.weights, resolution=224)
    pixels = np.random.default_rng(9).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels)).numpy()
    assert np.abs(run_onnxruntime(bundle.onnx_path, pixels) - expected).max() <= 1e-4
    shutil.rmtree(out)
