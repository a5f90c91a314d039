"""The TensorRT path: what runs without a GPU (validation, naming, availability), and a GPU build."""

from __future__ import annotations

import re
import sys
import types

import pytest

from export_fixtures import TINY
from insid3.errors import BackendUnavailableError, SettingsError
from insid3.export import ExportSettings, export_bundle
from insid3.export import tensorrt_build as trt_build
from insid3.export.pipeline import _resolve_trt


@pytest.mark.parametrize(("name", "slug"), [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100"),
    ("NVIDIA H200", "nvidia-h200"),
    ("NVIDIA H100 PCIe", "nvidia-h100-pcie"),
    ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-a100-sxm4"),
    ("Tesla T4", "tesla-t4"),
])
def test_gpu_slug(name, slug):
    assert trt_build.gpu_slug(name) == slug


def test_engine_and_cache_names_carry_precision_gpu_and_version():
    assert trt_build.engine_file_name("fp16", "NVIDIA H100 80GB HBM3", "10.13.0.35") == \
        "model.fp16.nvidia-h100.trt10.13.0.engine"
    assert trt_build.engine_file_name("bf16", "NVIDIA H200", "10.14.1") == "model.bf16.nvidia-h200.trt10.14.1.engine"
    assert trt_build.timing_cache_file_name("NVIDIA H200", "10.13.3.9") == "nvidia-h200.trt10.13.3.timing.cache"
    with pytest.raises(SettingsError):
        trt_build.engine_file_name("int8", "NVIDIA H200", "10.13.0")


@pytest.mark.parametrize("value", [0, -1, 257, True, 2.0])
def test_max_batch_validation(value):
    with pytest.raises(SettingsError, match="max batch"):
        trt_build.validate_max_batch(value)


def test_version_parsing():
    assert trt_build.parse_version("10.13.0.35") == (10, 13, 0)
    assert trt_build.parse_version("10.8.0") < trt_build.MIN_TENSORRT <= trt_build.parse_version("11.0.0")


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def _fake_tensorrt(monkeypatch, version: str) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))


def test_trt_without_tensorrt_is_one_clear_line(no_tensorrt):
    with pytest.raises(BackendUnavailableError) as exc_info:
        trt_build.require_tensorrt()
    assert str(exc_info.value) == "--trt needs TensorRT >= 10.13 and a CUDA device: tensorrt is not installed"


def test_old_tensorrt_is_refused_with_the_reason(monkeypatch):
    _fake_tensorrt(monkeypatch, "10.8.0.43")
    reason = trt_build.tensorrt_unavailable_reason()
    assert "tensorrt 10.8.0.43 is installed" in reason and re.search(r"4558, 4723, 4742", reason)


def test_tensorrt_without_a_cuda_device(monkeypatch):
    _fake_tensorrt(monkeypatch, "10.13.0.35")
    monkeypatch.setattr(trt_build, "cuda_device_name", lambda: None)
    assert trt_build.tensorrt_unavailable_reason() == "no CUDA device is visible (torch.cuda / cupy)"


def test_default_skips_the_engine_and_says_why(no_tensorrt):
    assert _resolve_trt(None) == (False, "tensorrt is not installed")
    assert _resolve_trt(False) == (False, "--no-trt")
    with pytest.raises(BackendUnavailableError):
        _resolve_trt(True)


def test_export_with_trt_fails_before_any_work(no_tensorrt, tmp_path):
    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True, trt=True)
    with pytest.raises(BackendUnavailableError, match="tensorrt is not installed"):
        export_bundle(settings)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(trt_build.tensorrt_unavailable_reason() is not None,
                    reason=f"TensorRT build: {trt_build.tensorrt_unavailable_reason()}")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engine_build_and_parity_on_a_gpu(tmp_path, precision):
    from insid3.format.bundle import load_bundle

    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True,
                              trt=True, precision=precision, max_batch=4)
    meta = load_bundle(export_bundle(settings)).metadata
    engine = meta.artifact("tensorrt")
    assert re.fullmatch(rf"model\.{precision}\.[a-z0-9-]+\.trt\d+\.\d+\.\d+\.engine", engine.file)
    assert engine.parity["against"] == "onnxruntime"
    assert engine.parity["min_cosine"] >= trt_build.MIN_COSINE[precision]
    assert engine.details["max_batch"] == 4 and meta.artifact("timing_cache") is not None
