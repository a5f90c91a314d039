"""Fixtures shared by the tests: the tiny bundle, a segmenter on it, and `xp`, the array module a
kernel test runs on."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny random-init bundle (2 blocks, 224 px), exported once per test session."""
    from support.export_fixtures import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), resolution=224, seed=0)


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    """A Segmenter on the tiny bundle (ONNX Runtime), one per test module, as each module had its own."""
    from insid3.engine import Segmenter

    return Segmenter.from_bundle(tiny_bundle, backend="onnxruntime")


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module under test: numpy always, cupy when importable with a CUDA device."""
    if request.param == "numpy":
        return np
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy variant: cupy is not installed")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver missing
        devices = 0
    if devices == 0:
        pytest.skip("CuPy variant: no CUDA device")
    return cupy
