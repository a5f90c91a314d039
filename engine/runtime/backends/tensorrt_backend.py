"""TensorRT: the bundle's engine for this GPU, run by insid3.tensorrt's runner.

Thin by design: loading, buffers and the stream are the runner's (shared with the export's
parity check); here are only the choice of engine and the backend template's `_infer`. Needs
tensorrt >= 10.13, cupy and a CUDA device (pip install 'insid3[gpu-cu12]' or 'insid3[gpu-cu13]', by
the driver's CUDA), none of which exist on the machines that run CI.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.errors import BackendUnavailableError
from insid3.format.bundle import Bundle
from insid3.gpu_stack import stack_mismatch
from insid3.tensorrt.engine_files import select_engine
from insid3.tensorrt.versions import gpu_name, tensorrt_unavailable_reason, tensorrt_version


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    reason = tensorrt_unavailable_reason()
    if reason is None or reason.startswith("no CUDA device"):
        mismatch = stack_mismatch()  # wheels of another CUDA than the driver's: name it, it is the fix
        if mismatch is not None and (reason is not None or mismatch.blocking):
            return mismatch.line if reason is None else f"{reason} ({mismatch.line})"
    if reason is not None:
        return reason
    if not bundle.tensorrt_engines():
        return f"bundle {bundle.folder} has no TensorRT engine (export it with --trt on a GPU machine)"
    try:
        select_engine(bundle, gpu_name(options.device_id), tensorrt_version())
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def runs_on_gpu_here(options: BackendOptions) -> bool:
    return True  # whenever it can run at all


class TensorRtBackend(Backend):
    name = "tensorrt"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import cupy

        from insid3.tensorrt.runner import TensorRtRunner

        super().__init__(bundle)
        self.xp, self._device_id = cupy, options.device_id
        self.device = f"cuda:{options.device_id}"
        artifact = select_engine(bundle, gpu_name(options.device_id), tensorrt_version())
        self.precision = artifact.precision
        with self._device_scope():  # the engine's context, the runner's stream and buffers go there
            self._runner = TensorRtRunner.from_file(bundle.folder / artifact.file)
        self.max_batch = self._runner.max_batch

    def _device_scope(self) -> AbstractContextManager:
        return self.xp.cuda.Device(self._device_id)  # per thread in CuPy: the worker thread starts at 0

    def _infer(self, pixel_values: np.ndarray) -> Any:
        # The runner overwrites its output buffer on the next call; callers may keep these features.
        # The copy runs on the caller's stream after the runner synchronised its own (base.py).
        return self._runner.infer(pixel_values).copy()

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def _release(self) -> None:
        self._runner.close()


def load(bundle: Bundle, options: BackendOptions) -> TensorRtBackend:
    reason = unavailable_reason(bundle, options)
    if reason is not None:
        raise BackendUnavailableError(f"backend 'tensorrt' cannot run here: {reason}")
    return TensorRtBackend(bundle, options)
