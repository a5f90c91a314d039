"""The CUDA wheel / driver check (insid3.gpu_stack): pure, so every case runs with injected versions."""

import pytest

from insid3 import gpu_stack
from insid3.gpu_stack import GpuStack, check_stack, cuda_version_text, wheel_cuda_major


@pytest.mark.parametrize(("name", "version", "major"), [
    ("cupy-cuda12x", "13.6.0", 12),
    ("cupy-cuda13x", "14.2.0", 13),
    ("tensorrt-cu12", "10.13.0.35", 12),
    ("tensorrt-cu13", "11.4.0.106", 13),
    ("torch", "2.11.0+cu130", 13),
    ("torch", "2.8.0+cu128", 12),
    ("torch", "2.4.0+cu118", 11),
    ("torch", "2.13.0+cpu", None),
    ("torch", "2.11.0", None),
    ("onnxruntime-gpu", "1.26.0", 12),
    ("onnxruntime-gpu", "1.19.2", 12),
    ("onnxruntime-gpu", "1.27.0", 13),
    ("onnxruntime-gpu", "1.31.1", 13),
    ("onnxruntime-gpu", "1.18.1", None),
    ("numpy", "2.0.0", None),
])
def test_the_cuda_major_a_wheel_was_built_for(name, version, major):
    assert wheel_cuda_major(name, version) == major


def test_versions_read_as_the_driver_reports_them():
    assert cuda_version_text(13000) == "13.0" and cuda_version_text(12040) == "12.4"


def test_matching_wheels_and_no_driver_are_not_a_mismatch():
    matching = {"cupy-cuda13x": "14.2.0", "tensorrt-cu13": "11.4.0.106", "torch": "2.11.0+cu130"}
    assert check_stack(GpuStack(driver_cuda=13000, wheels=matching)) is None
    assert check_stack(GpuStack(driver_cuda=None, wheels={"cupy-cuda12x": "13.6.0"})) is None
    assert check_stack(GpuStack(driver_cuda=12040, wheels={"torch": "2.13.0+cpu"})) is None


def test_cuda12_wheels_on_a_cuda13_driver_are_named_with_the_extra_to_install():
    mismatch = check_stack(GpuStack(driver_cuda=13000, wheels={"cupy-cuda12x": "13.6.0", "torch": "2.11.0+cu130"}))
    assert mismatch is not None and not mismatch.blocking
    assert mismatch.line == (
        "the CUDA driver supports CUDA 13.0 but cupy-cuda12x 13.6.0 is built for CUDA 12: they run only where "
        "that CUDA's runtime libraries are installed too; pip install 'insid3[gpu-cu13]' after uninstalling those"
    )
    assert "\n" not in mismatch.line


def test_wheels_newer_than_the_driver_block():
    mismatch = check_stack(GpuStack(driver_cuda=12040, wheels={"cupy-cuda13x": "14.2.0", "tensorrt-cu13": "11.4"}))
    assert mismatch is not None and mismatch.blocking
    assert mismatch.line.startswith("the CUDA driver supports CUDA 12.4 but cupy-cuda13x 14.2.0 is built for CUDA 13, "
                                    "tensorrt-cu13 11.4 is built for CUDA 13: they need a newer driver;")
    assert mismatch.line.endswith("pip install 'insid3[gpu-cu12]' after uninstalling those")


def test_a_driver_without_an_extra_gets_a_generic_fix():
    mismatch = check_stack(GpuStack(driver_cuda=11080, wheels={"cupy-cuda12x": "13.6.0"}))
    assert mismatch is not None and mismatch.blocking and mismatch.line.endswith("install wheels for this CUDA")


@pytest.mark.skipif(gpu_stack.driver_cuda_version() is not None, reason="a CUDA driver is installed here")
def test_this_machine_has_no_driver_and_so_no_mismatch():
    # No GPU here: no libcuda, so the check passes and the backends say "no CUDA device" instead.
    assert gpu_stack.driver_cuda_version() is None
    assert gpu_stack.installed_stack().driver_cuda is None and gpu_stack.stack_mismatch() is None


def test_installed_wheels_are_read_from_package_metadata(monkeypatch):
    versions = {"cupy-cuda12x": "13.6.0", "torch": "2.11.0+cu130"}

    def version(name):
        if name not in versions:
            raise gpu_stack.importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(gpu_stack.importlib.metadata, "version", version)
    monkeypatch.setattr(gpu_stack, "driver_cuda_version", lambda: 13000)
    assert gpu_stack.installed_stack() == GpuStack(driver_cuda=13000, wheels=versions)
    assert gpu_stack.stack_mismatch().line.startswith("the CUDA driver supports CUDA 13.0 but cupy-cuda12x")


@pytest.mark.parametrize(("trt_reason", "mismatch", "expected"), [
    ("tensorrt is not installed", gpu_stack.StackMismatch("cu13 wheels", blocking=True), "tensorrt is not installed"),
    ("no CUDA device is usable (CUDARuntimeError: ...)", gpu_stack.StackMismatch("cu13 wheels", blocking=True),
     "no CUDA device is usable (CUDARuntimeError: ...) (cu13 wheels)"),
    (None, gpu_stack.StackMismatch("cu13 wheels", blocking=True), "cu13 wheels"),
])
def test_the_tensorrt_backend_names_the_mismatch_where_it_explains_the_failure(
    monkeypatch, tiny_bundle, trt_reason, mismatch, expected
):
    from insid3.engine.runtime.backends import tensorrt_backend
    from insid3.format.bundle import load_bundle

    monkeypatch.setattr(tensorrt_backend, "tensorrt_unavailable_reason", lambda: trt_reason)
    monkeypatch.setattr(tensorrt_backend, "stack_mismatch", lambda: mismatch)
    assert tensorrt_backend.unavailable_reason(load_bundle(tiny_bundle), tensorrt_backend.BackendOptions()) == expected
