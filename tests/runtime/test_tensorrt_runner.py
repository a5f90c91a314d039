"""insid3.tensorrt's loader and runner against fakes of tensorrt and cupy, and on a GPU for real."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from support.trt_fakes import DataType, FakeEngine, expected_features, fake_cupy, fake_tensorrt

from insid3.errors import BackendUnavailableError, BundleError, InputImageError
from insid3.tensorrt.runner import DeviceBuffer, TensorRtRunner


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """(write an engine file for a fake engine, the fake cupy) with both fakes installed."""
    engines: dict[bytes, FakeEngine | None] = {}
    cupy = fake_cupy()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engines))
    monkeypatch.setitem(sys.modules, "cupy", cupy)

    def engine_file(engine: FakeEngine | None, name: str = "model.fp16.gpu.trt10.13.3.engine"):
        path = tmp_path / name
        path.write_bytes(name.encode())
        engines[name.encode()] = engine
        return path

    return engine_file, cupy


def _pixels(batch: int, resolution: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, resolution, resolution), dtype=np.float32)


def test_features_come_from_the_bound_buffers(fakes):
    engine_file, cupy = fakes
    runner = TensorRtRunner.from_file(engine_file(FakeEngine()))
    pixels = _pixels(2)
    out = runner.infer(pixels)
    np.testing.assert_array_equal(cupy.asnumpy(out), expected_features(pixels, 4, 8))
    assert out.shape == (2, 4, 8) and runner.max_batch == 4
    assert cupy.streams[0].synchronized == 1  # complete when infer returns


def test_buffers_persist_and_grow_only_for_a_larger_batch(fakes):
    engine_file, cupy = fakes
    runner = TensorRtRunner.from_file(engine_file(FakeEngine()))
    first = runner.infer(_pixels(2, seed=1))
    assert len(cupy.allocations) == 2  # one input, one output buffer
    smaller = _pixels(1, seed=2)
    out = runner.infer(smaller)
    assert len(cupy.allocations) == 2 and out.data.ptr == first.data.ptr  # reused
    np.testing.assert_array_equal(cupy.asnumpy(out), expected_features(smaller, 4, 8))
    larger = _pixels(4, seed=3)
    out = runner.infer(larger)
    assert cupy.allocations[2:] == [4 * 3 * 32 * 32, 4 * 4 * 8]  # grown to the new batch
    np.testing.assert_array_equal(cupy.asnumpy(out), expected_features(larger, 4, 8))
    runner.infer(_pixels(3, seed=4))
    assert len(cupy.allocations) == 4


def test_device_buffer_views_share_one_allocation():
    buffer = DeviceBuffer(np)
    a = buffer.view((2, 3))
    b = buffer.view((5,))
    assert buffer.capacity == 6 and np.shares_memory(a, b)
    c = buffer.view((7,))
    assert buffer.capacity == 7 and not np.shares_memory(a, c)


@pytest.mark.parametrize(("engine", "message"), [
    (FakeEngine(input_name="images"), r"input tensors are \['images'\], expected \['pixel_values'\]"),
    (FakeEngine(output_name="last_hidden_state"),
     r"output tensors are \['last_hidden_state'\], expected \['features'\]"),
    (FakeEngine(output_dtype=DataType.HALF), r"tensor 'features' is DataType.HALF, expected float32"),
])
def test_tensors_are_read_from_the_engine_and_checked(fakes, engine, message):
    engine_file, _ = fakes
    with pytest.raises(BundleError, match=rf"^model\.fp16\.gpu\.trt10\.13\.3\.engine: .*{message}"):
        TensorRtRunner.from_file(engine_file(engine))


@pytest.mark.parametrize(("pixels", "message"), [
    (_pixels(1).astype(np.float64), r"pixel_values: expected float32 \('B', 3, 32, 32\), got float64 \(1, 3, 32, 32\)"),
    (_pixels(1, resolution=16), r"got float32 \(1, 3, 16, 16\)"),
    (_pixels(1)[0], r"got float32 \(3, 32, 32\)"),
])
def test_infer_checks_its_input_against_the_engine(fakes, pixels, message):
    engine_file, _ = fakes
    runner = TensorRtRunner.from_file(engine_file(FakeEngine()))
    with pytest.raises(InputImageError, match=message):
        runner.infer(pixels)


def test_infer_refuses_a_batch_outside_the_profile(fakes):
    engine_file, cupy = fakes
    runner = TensorRtRunner.from_file(engine_file(FakeEngine(max_batch=2)))
    with pytest.raises(ValueError, match=r"pixel_values: batch 3 is outside the engine's profile \(1 to 2\)"):
        runner.infer(_pixels(3))
    assert cupy.allocations == []  # refused before any work


def test_a_failed_execution_names_the_engine(fakes):
    engine_file, _ = fakes
    engine = FakeEngine()
    runner = TensorRtRunner.from_file(engine_file(engine))
    engine.contexts[0].fail = True
    with pytest.raises(RuntimeError, match=r"model\.fp16\.gpu\.trt10\.13\.3\.engine: TensorRT execute_async_v3 failed"):
        runner.infer(_pixels(1))


def test_an_engine_that_does_not_deserialise_names_the_file(fakes):
    engine_file, _ = fakes
    path = engine_file(None)
    with pytest.raises(BackendUnavailableError, match=rf"TensorRT 10\.13\.3\.9 cannot deserialise {path}"):
        TensorRtRunner.from_file(path)


def test_a_missing_engine_file_names_the_file(fakes, tmp_path):
    with pytest.raises(BundleError, match=rf"TensorRT engine {tmp_path / 'gone.engine'} cannot be read"):
        TensorRtRunner.from_file(tmp_path / "gone.engine")


def _gpu_reason() -> str | None:
    from insid3.tensorrt.versions import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=f"TensorRT runner: {_gpu_reason()}")
def test_the_tensorrt_backend_matches_onnxruntime_on_a_gpu(tmp_path):
    from support.export_fixtures import TINY

    from insid3.engine.runtime.backends import load_backend
    from insid3.export import ExportSettings, export_bundle
    from insid3.format.bundle import load_bundle

    settings = ExportSettings(model=TINY, resolution=224, out_dir=tmp_path / "b", random_init=True,
                              trt=True, precision="fp32", max_batch=4)
    bundle = load_bundle(export_bundle(settings))
    trt_backend, ort_backend = load_backend(bundle, "tensorrt"), load_backend(bundle, "onnxruntime")
    assert trt_backend.max_batch == 4 and trt_backend.device == "cuda:0"
    pixels = _pixels(3, resolution=224, seed=5)
    reference = np.asarray(ort_backend.features(pixels).get() if ort_backend.xp is not np
                           else ort_backend.features(pixels))
    kept = trt_backend.features(pixels[:1])  # the backend copies: later calls leave it alone
    batched = trt_backend.features(pixels).get()
    one_by_one = np.concatenate([trt_backend.features(pixels[i:i + 1]).get() for i in range(3)])
    np.testing.assert_allclose(kept.get(), one_by_one[:1])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    cosine = (batched * reference).sum(-1) / (np.linalg.norm(batched, axis=-1) * np.linalg.norm(reference, axis=-1))
    assert cosine.min() >= 0.9999


def test_buffers_come_from_the_runners_stream_after_the_callers_work(fakes):
    """The stream rule (backends/base.py): allocated with the writing stream current, which first
    waits for what the caller's stream has queued."""
    engine_file, cupy = fakes
    runner = TensorRtRunner.from_file(engine_file(FakeEngine()))
    runner.infer(_pixels(2))
    (stream,) = cupy.streams
    assert cupy.allocated_on == ["runner", "runner"] and stream.waited_for == ["event on null"]


def test_close_lets_go_once_and_infer_after_it_is_an_error(fakes):
    engine_file, cupy = fakes
    with TensorRtRunner.from_file(engine_file(FakeEngine())) as runner:
        runner.infer(_pixels(1))
        assert not runner.closed
    assert runner.closed and cupy.streams[0].synchronized == 2  # after infer, then before letting go
    runner.close()  # a second close does nothing
    assert cupy.streams[0].synchronized == 2
    with pytest.raises(RuntimeError, match="runner is closed"):
        runner.infer(_pixels(1))
