"""Every command, pointed at a damaged bundle, says so in one line and exits 2: no traceback."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from insid3.engine.serve.launch import free_port
from insid3.format.bundle import BASIS_FILE, ONNX_FILE


@pytest.fixture(scope="module")
def damaged(tiny_bundle, tmp_path_factory):
    """Two copies of the bundle: model.onnx cut in half, and a positional basis overwritten."""
    root = tmp_path_factory.mktemp("damaged")
    truncated = shutil.copytree(tiny_bundle, root / "truncated")
    model = (truncated / ONNX_FILE).read_bytes()
    (truncated / ONNX_FILE).write_bytes(model[: len(model) // 2])
    basis = shutil.copytree(tiny_bundle, root / "basis")
    size = (basis / BASIS_FILE).stat().st_size
    (basis / BASIS_FILE).write_bytes(b"\x93NUMPY" + b"\x00" * (size - 6))
    image = root / "image.png"
    mask = root / "mask.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(mask)
    return {"truncated": truncated, "basis": basis, "image": image, "mask": mask, "root": root}


def commands(bundle, damaged) -> dict[str, list[str]]:
    image, mask, root = str(damaged["image"]), str(damaged["mask"]), damaged["root"]
    return {
        "insid3-segment": ["insid3.engine.cli.segment", "--bundle", str(bundle), "--ref", image, "--ref-mask", mask,
                           "--backend", "onnxruntime", "--out", str(root / "out"), image],
        "insid3-serve": ["insid3.engine.cli.serve", "--bundle", str(bundle), "--backend", "onnxruntime",
                         "--port", str(free_port())],
        "insid3-bench": ["insid3.engine.cli.bench", "--bundle", str(bundle), "--backend", "onnxruntime", "--iters", "1"],
        "insid3-demo": ["insid3.engine.cli.demo", "--bundle", str(bundle), "--backend", "torch", "--out", str(root / "demo")],
    }


@pytest.mark.parametrize("damage", ["truncated", "basis"])
@pytest.mark.parametrize("command", ["insid3-segment", "insid3-serve", "insid3-bench", "insid3-demo"])
def test_a_damaged_bundle_is_one_line(damaged, damage, command):
    argv = commands(damaged[damage], damaged)[command]
    result = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=180)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"{command}: error: bundle")
    assert (ONNX_FILE if damage == "truncated" else BASIS_FILE) in lines[0]
