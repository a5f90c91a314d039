"""The export's TensorRT path: what runs without a GPU (validation, availability), and a GPU build.

Versions, names and the runner are insid3.tensorrt's: tests/test_tensorrt_*.py.
"""

from __future__ import annotations

import re
import sys

import pytest
from support.export_fixtures import TINY
from support.trt_fakes import installed_tensorrt

from insid3.errors import BackendUnavailableError, SettingsError
from insid3.export import ExportSettings, export_bundle
from insid3.export import tensorrt_build as trt_build
from insid3.export.pipeline import _resolve_trt


def test_precision_validation():
    assert trt_build.validate_precision("bf16") == "bf16"
    with pytest.raises(SettingsError, match="precision 'int8' is not one of"):
        trt_build.validate_precision("int8")


@pytest.mark.parametrize("value", [0, -1, 257, True, 2.0])
def test_max_batch_validation(value):
    with pytest.raises(SettingsError, match="max batch"):
        trt_build.validate_max_batch(value)


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def test_trt_without_tensorrt_is_one_clear_line(no_tensorrt):
    with pytest.raises(BackendUnavailableError) as exc_info:
        trt_build.require_tensorrt()
    assert str(exc_info.value) == "--trt needs TensorRT >= 10.13 and a CUDA device: tensorrt is not installed"


def test_old_tensorrt_is_refused_with_the_reason(monkeypatch):
    installed_tensorrt(monkeypatch, "10.8.0.43")
    with pytest.raises(BackendUnavailableError, match=r"tensorrt 10\.8\.0\.43 is installed.*4558, 4723, 4742"):
        trt_build.require_tensorrt()


def test_build_refuses_an_unknown_precision_before_looking_for_tensorrt(no_tensorrt, tmp_path):
    with pytest.raises(SettingsError, match="precision 'int8' is not one of"):
        trt_build.build_engine(tmp_path / "model.onnx", tmp_path, precision="int8", max_batch=1, resolution=224)


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
