"""The backend template (checks around `_infer`) and auto's order as a property of the entries."""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest

from insid3.engine.runtime import backends
from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.errors import BackendUnavailableError, InputImageError

META = types.SimpleNamespace(resolution=32, num_patches=4, embed_dim=8)
BUNDLE = types.SimpleNamespace(metadata=META, folder="/bundles/b")


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, output=None, max_batch=None) -> None:
        super().__init__(BUNDLE)
        self.output, self.max_batch, self.calls = output, max_batch, 0

    def _infer(self, pixel_values):
        self.calls += 1
        if self.output is not None:
            return self.output
        return np.zeros((len(pixel_values), META.num_patches, META.embed_dim), np.float32)


def _pixels(batch: int = 1, resolution: int = 32, dtype=np.float32) -> np.ndarray:
    return np.zeros((batch, 3, resolution, resolution), dtype)


def test_features_pass_through_when_both_sides_are_right():
    backend = FakeBackend()
    out = backend.features(_pixels(2))
    assert out.shape == (2, 4, 8) and out.dtype == np.float32 and backend.calls == 1


@pytest.mark.parametrize(("pixels", "message"), [
    (_pixels(dtype=np.float64), r"pixel_values: expected float32 \('B', 3, 32, 32\), got float64 \(1, 3, 32, 32\)"),
    (_pixels(resolution=16), r"pixel_values: expected float32 \('B', 3, 32, 32\), got float32 \(1, 3, 16, 16\)"),
    (np.zeros((3, 32, 32), np.float32), r"got float32 \(3, 32, 32\)"),
])
def test_the_pixel_batch_is_checked_before_inference(pixels, message):
    backend = FakeBackend()
    with pytest.raises(InputImageError, match=message):
        backend.features(pixels)
    assert backend.calls == 0


def test_max_batch_is_respected_before_inference():
    backend = FakeBackend(max_batch=2)
    with pytest.raises(ValueError, match=r"fake backend: batch 3 exceeds its profile \(max 2\)"):
        backend.features(_pixels(3))
    assert backend.calls == 0
    assert backend.features(_pixels(2)).shape == (2, 4, 8)


@pytest.mark.parametrize(("output", "message"), [
    (np.zeros((1, 5, 8), np.float32), r"fake backend: output 'features' has shape \(1, 5, 8\), expected \(1, 4, 8\)"),
    (np.zeros((2, 4, 8), np.float32), r"has shape \(2, 4, 8\), expected \(1, 4, 8\)"),
    (np.zeros((4, 8), np.float32), r"has shape \(4, 8\), expected \(1, 4, 8\)"),
    (np.zeros((1, 4, 8), np.float16), r"fake backend: output 'features' is float16, expected float32"),
])
def test_wrong_features_from_a_backend_are_a_clear_error(output, message):
    with pytest.raises(RuntimeError, match=message):
        FakeBackend(output=output).features(_pixels(1))


def test_every_backend_fills_in_the_template():
    for entry in backends.BACKENDS.values():
        module = importlib.import_module(f"insid3.engine.runtime.backends.{entry.module}")
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, Backend) and v is not Backend]
        assert [cls.name for cls in classes] == [entry.name]
        assert all(callable(getattr(module, f)) for f in ("unavailable_reason", "runs_on_gpu_here", "load"))


ALL = {"tensorrt": None, "onnxruntime": None, "openvino": None, "torch": None, "torch-cuda": None}


def _onnxruntime_on_cuda(monkeypatch, on_cuda: bool) -> None:
    from insid3.engine.runtime.backends import onnxruntime_backend

    monkeypatch.setattr(onnxruntime_backend, "runs_on_gpu_here", lambda options: on_cuda)


@pytest.mark.parametrize(("unavailable", "ort_on_cuda", "order"), [
    ((), True, ["tensorrt", "onnxruntime", "torch-cuda", "openvino"]),
    (("tensorrt",), True, ["onnxruntime", "torch-cuda", "openvino"]),
    (("tensorrt",), False, ["torch-cuda", "openvino", "onnxruntime"]),
    (("tensorrt", "torch-cuda"), False, ["openvino", "onnxruntime"]),
    (("tensorrt", "torch-cuda", "openvino"), False, ["onnxruntime"]),
    (("tensorrt", "torch-cuda", "openvino", "onnxruntime"), False, []),  # torch: never auto
])
def test_auto_prefers_gpus_then_the_entries_rank(monkeypatch, unavailable, ort_on_cuda, order):
    _onnxruntime_on_cuda(monkeypatch, ort_on_cuda)
    reasons = {name: ("missing" if name in unavailable else None) for name in ALL}
    assert backends.auto_order(reasons, BackendOptions()) == order


def test_auto_without_any_backend_lists_every_reason(monkeypatch):
    reasons = {name: f"no {name} here" for name in ALL}
    monkeypatch.setattr(backends, "availability", lambda bundle, options: reasons)
    with pytest.raises(BackendUnavailableError) as exc_info:
        backends.load_backend(BUNDLE, "auto")
    assert str(exc_info.value) == (
        "no backend can run this bundle here (tensorrt: no tensorrt here; onnxruntime: no onnxruntime here; "
        "openvino: no openvino here; torch: no torch here; torch-cuda: no torch-cuda here)"
    )


def test_auto_loads_the_first_in_its_order(monkeypatch):
    _onnxruntime_on_cuda(monkeypatch, False)
    loaded = []
    monkeypatch.setattr(backends, "availability",
                        lambda bundle, options: dict(ALL, tensorrt="no GPU", **{"torch-cuda": "no GPU"}))
    monkeypatch.setattr(backends.BackendEntry, "load", lambda entry, bundle, options: loaded.append(entry.name)
                        or types.SimpleNamespace(name=entry.name, device="cpu", precision="fp32"))
    assert backends.load_backend(BUNDLE, "auto").name == "openvino" and loaded == ["openvino"]


def test_availability_names_every_backend(tiny_bundle):
    from insid3.format.bundle import load_bundle

    reasons = backends.availability(load_bundle(tiny_bundle))
    assert list(reasons) == ["tensorrt", "onnxruntime", "openvino", "torch", "torch-cuda"]
    assert reasons["onnxruntime"] is None


@pytest.mark.parametrize("name", ["onnxruntime", "torch", "openvino"])
def test_cpu_backends_close_once_and_refuse_features_after(tiny_bundle, name):
    """The lifecycle of backends/base.py on the real CPU backends: features inside a `with` block,
    the library's objects let go at its end, a second close harmless, features after it refused."""
    from insid3.format.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    entry = backends.BACKENDS[name]
    reason = entry.unavailable_reason(bundle, BackendOptions())
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    resolution = bundle.metadata.resolution
    pixels = np.zeros((1, 3, resolution, resolution), np.float32)
    with entry.load(bundle, BackendOptions()) as backend:
        assert backend.features(pixels).shape == (1, bundle.metadata.num_patches, bundle.metadata.embed_dim)
        assert not backend.closed
    assert backend.closed
    held = {k: v for k, v in vars(backend).items() if k in ("_session", "_model", "_compiled", "_request")}
    assert held and all(value is None for value in held.values())
    backend.close()
    with pytest.raises(RuntimeError, match=f"{name} backend: closed"):
        backend.features(pixels)


def test_close_calls_release_once_inside_the_device_scope():
    events = []

    class Scoped(FakeBackend):
        def _device_scope(self):
            events.append("enter")
            return super()._device_scope()

        def _release(self):
            events.append("release")

    backend = Scoped()
    backend.features(_pixels(1))
    backend.close()
    backend.close()
    assert events == ["enter", "enter", "release"]


def test_onnxruntime_providers_are_told_the_device_and_the_stream():
    from insid3.engine.runtime.backends.onnxruntime_backend import provider_list

    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    options = {"device_id": "1", "user_compute_stream": "4096"}
    assert provider_list(True, available, 1, 4096) == [
        ("TensorrtExecutionProvider", options), ("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    assert provider_list(True, available[1:], 0, None) == [("CUDAExecutionProvider", {"device_id": "0"}),
                                                           "CPUExecutionProvider"]
    assert provider_list(False, available, 1, None) == ["CPUExecutionProvider"]


def test_onnxruntime_on_cuda_follows_the_stream_rule():
    """ORT writes the output on our stream (user_compute_stream): the buffer is allocated with that
    stream current, the stream first waits for the caller's queued work, and it is synchronised at
    the hand-over; the output is bound on the backend's device."""
    from support.trt_fakes import fake_cupy

    from insid3.engine.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    cupy = fake_cupy()
    stream = cupy.cuda.Stream()
    bound = {}

    class Binding:
        def bind_cpu_input(self, name, array):
            bound["input"] = array.shape

        def bind_output(self, name, device, device_id, dtype, shape, ptr):
            bound["output"] = (device, device_id, shape, ptr)

        def synchronize_outputs(self):
            bound["synchronized_outputs"] = True

    session = types.SimpleNamespace(io_binding=Binding, run_with_iobinding=lambda binding: None)
    backend = OnnxRuntimeBackend.__new__(OnnxRuntimeBackend)
    backend.bundle, backend.xp, backend._session, backend._stream, backend._device_id = BUNDLE, cupy, session, stream, 1
    out = backend._run_on_device(_pixels(2))
    assert cupy.allocated_on == ["runner"] and stream.waited_for == ["event on null"] and stream.synchronized == 1
    assert bound["output"] == ("cuda", 1, (2, META.num_patches, META.embed_dim), out.data.ptr)
    assert bound["input"] == (2, 3, 32, 32) and bound["synchronized_outputs"]
