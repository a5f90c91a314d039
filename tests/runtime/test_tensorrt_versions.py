"""insid3.tensorrt's one version check, GPU-name helper and engine-naming rule (no GPU needed)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from support.trt_fakes import installed_tensorrt

from insid3.errors import BackendUnavailableError
from insid3.format.bundle import Artifact
from insid3.tensorrt import engine_files, versions


def test_version_parsing():
    assert versions.parse_version("10.13.0.35") == (10, 13, 0)
    assert versions.parse_version("10.8.0") < versions.MIN_TENSORRT <= versions.parse_version("10.13.0")
    assert versions.MIN_TENSORRT <= versions.parse_version("11.0.0")


def _fake_cupy(monkeypatch, *, devices: int = 1, name=b"NVIDIA H100 80GB HBM3", error: Exception | None = None):
    def device_count() -> int:
        if error is not None:
            raise error
        return devices

    runtime = types.SimpleNamespace(getDeviceCount=device_count, getDeviceProperties=lambda i: {"name": name})
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))


def test_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert versions.tensorrt_unavailable_reason() == "tensorrt is not installed"


def test_old_tensorrt_is_refused_with_the_reason(monkeypatch):
    installed_tensorrt(monkeypatch, "10.8.0.43")
    _fake_cupy(monkeypatch)
    reason = versions.tensorrt_unavailable_reason()
    assert reason.startswith("tensorrt 10.8.0.43 is installed, >= 10.13 is needed")
    assert "4558, 4723, 4742" in reason


def test_the_runner_needs_cupy(monkeypatch):
    installed_tensorrt(monkeypatch, "10.13.0.35")
    monkeypatch.setitem(sys.modules, "cupy", None)
    reason = versions.tensorrt_unavailable_reason()
    assert reason.startswith("cupy is not installed") and "runner" in reason


def test_without_a_cuda_device(monkeypatch):
    installed_tensorrt(monkeypatch, "10.13.0.35")
    _fake_cupy(monkeypatch, devices=0)
    assert versions.tensorrt_unavailable_reason() == "no CUDA device is visible (cupy)"


def test_without_a_usable_driver(monkeypatch):
    installed_tensorrt(monkeypatch, "10.13.0.35")
    _fake_cupy(monkeypatch, error=RuntimeError("cudaErrorInsufficientDriver"))
    assert versions.tensorrt_unavailable_reason() == (
        "no CUDA device is usable (RuntimeError: cudaErrorInsufficientDriver)"
    )


def test_a_good_tensorrt_with_a_device_is_available(monkeypatch):
    installed_tensorrt(monkeypatch, "10.13.3.9")
    _fake_cupy(monkeypatch)
    assert versions.tensorrt_unavailable_reason() is None


@pytest.mark.parametrize("raw", [b"NVIDIA H200", "NVIDIA H200"])
def test_gpu_name_decodes_what_the_driver_gives(monkeypatch, raw):
    _fake_cupy(monkeypatch, name=raw)
    assert versions.gpu_name(0) == "NVIDIA H200"


@pytest.mark.parametrize(("name", "slug"), [
    ("NVIDIA H100 80GB HBM3", "nvidia-h100"),
    ("NVIDIA H200", "nvidia-h200"),
    ("NVIDIA H100 PCIe", "nvidia-h100-pcie"),
    ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-a100-sxm4"),
    ("Tesla T4", "tesla-t4"),
])
def test_gpu_slug(name, slug):
    assert engine_files.gpu_slug(name) == slug


def test_engine_and_cache_names_carry_precision_gpu_and_version():
    assert engine_files.engine_file_name("fp16", "NVIDIA H100 80GB HBM3", "10.13.0.35") == \
        "model.fp16.nvidia-h100.trt10.13.0.engine"
    assert engine_files.engine_file_name("bf16", "NVIDIA H200", "10.14.1") == "model.bf16.nvidia-h200.trt10.14.1.engine"
    assert engine_files.timing_cache_file_name("NVIDIA H200", "10.13.3.9") == "nvidia-h200.trt10.13.3.timing.cache"


def _engine(file: str, gpu: str, trt: str) -> Artifact:
    return Artifact(kind="tensorrt", file=file, precision="fp16", bytes=1, sha256="0" * 64,
                    details={"gpu": gpu, "tensorrt": trt})


def _bundle(*engines: Artifact):
    return types.SimpleNamespace(folder=Path("/bundles/b"), tensorrt_engines=lambda: list(engines))


def test_select_engine_takes_the_one_built_for_this_gpu_and_tensorrt():
    h100 = _engine("model.fp16.nvidia-h100.trt10.13.0.engine", "NVIDIA H100 80GB HBM3", "10.13.0.35")
    h200 = _engine("model.fp16.nvidia-h200.trt10.13.0.engine", "NVIDIA H200", "10.13.0.35")
    assert engine_files.select_engine(_bundle(h100, h200), "NVIDIA H200", "10.13.0.35") is h200


def test_select_engine_names_what_the_bundle_holds():
    h100 = _engine("model.fp16.nvidia-h100.trt10.13.0.engine", "NVIDIA H100 80GB HBM3", "10.13.0.35")
    with pytest.raises(BackendUnavailableError) as exc_info:
        engine_files.select_engine(_bundle(h100), "NVIDIA H100 80GB HBM3", "10.14.1")
    assert str(exc_info.value) == (
        "no engine in /bundles/b matches NVIDIA H100 80GB HBM3 with TensorRT 10.14.1; it holds "
        "model.fp16.nvidia-h100.trt10.13.0.engine (NVIDIA H100 80GB HBM3, TensorRT 10.13.0.35)"
    )
