"""TensorRT: deserialise the bundle's engine and run it on CuPy device buffers.

Thin by design: everything here needs tensorrt, cupy and a CUDA device, none of which exist on
the machines that run CI. Written from TensorRT 10's Python API (execute_async_v3 with named
tensor addresses, one optimisation profile for batch 1..max_batch).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from insid3.engine.backends.base import BackendOptions, check_features, check_pixel_batch
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME
from insid3.format.bundle import Artifact, Bundle
from insid3.errors import BackendUnavailableError

MIN_TENSORRT = (10, 13)


def _gpu_name(device_id: int) -> str:
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(device_id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    for package in ("tensorrt", "cupy"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (pip install 'insid3[gpu]')"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device is visible"
    except Exception as exc:  # no driver at all
        return f"no CUDA device is usable ({exc.__class__.__name__}: {exc})"
    import tensorrt as trt

    if _version_tuple(trt.__version__) < MIN_TENSORRT:
        return f"TensorRT {trt.__version__} is too old: >= 10.13 is needed (earlier 10.x miscompile DINOv3)"
    if not bundle.tensorrt_engines():
        return f"bundle {bundle.folder} has no TensorRT engine (export it with --trt on a GPU machine)"
    try:
        select_engine(bundle, _gpu_name(options.device_id), trt.__version__)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def select_engine(bundle: Bundle, gpu_name: str, trt_version: str) -> Artifact:
    """The bundle's engine built for this GPU model and TensorRT version (engines are not portable)."""
    engines = bundle.tensorrt_engines()
    for artifact in engines:
        if artifact.details.get("gpu") == gpu_name and artifact.details.get("tensorrt") == trt_version:
            return artifact
    built_for = ", ".join(
        f"{a.file} ({a.details.get('gpu')}, TensorRT {a.details.get('tensorrt')})" for a in engines
    )
    raise BackendUnavailableError(
        f"no engine in {bundle.folder} matches {gpu_name} with TensorRT {trt_version}; it holds {built_for}"
    )


class TensorRtBackend:
    name = "tensorrt"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import cupy
        import tensorrt as trt

        self._bundle = bundle
        self.xp = cupy
        self.device = f"cuda:{options.device_id}"
        cupy.cuda.Device(options.device_id).use()
        artifact = select_engine(bundle, _gpu_name(options.device_id), trt.__version__)
        self.precision = artifact.precision
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(bundle.folder / artifact.file).read_bytes())
        if self._engine is None:
            raise BackendUnavailableError(f"TensorRT could not deserialise {artifact.file}")
        self._context = self._engine.create_execution_context()
        _, _, max_shape = self._engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.max_batch = int(max_shape[0])
        self._stream = cupy.cuda.Stream(non_blocking=True)

    def features(self, pixel_values: np.ndarray) -> Any:
        check_pixel_batch(pixel_values, self._bundle.metadata.resolution)
        batch = pixel_values.shape[0]
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's profile (max {self.max_batch})")
        meta = self._bundle.metadata
        with self._stream:
            device_in = self.xp.asarray(pixel_values)
            out = self.xp.empty((batch, meta.num_patches, meta.embed_dim), self.xp.float32)
        self._context.set_input_shape(INPUT_NAME, tuple(pixel_values.shape))
        self._context.set_tensor_address(INPUT_NAME, device_in.data.ptr)
        self._context.set_tensor_address(OUTPUT_NAME, out.data.ptr)
        if not self._context.execute_async_v3(self._stream.ptr):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self._stream.synchronize()  # kernels run on the default stream next
        check_features(out, self._bundle, batch, self.name)
        return out

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


def load(bundle: Bundle, options: BackendOptions) -> TensorRtBackend:
    reason = unavailable_reason(bundle, options)
    if reason is not None:
        raise BackendUnavailableError(f"backend 'tensorrt' cannot run here: {reason}")
    return TensorRtBackend(bundle, options)
