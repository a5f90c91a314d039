"""ONNX Runtime: TensorRT -> CUDA -> CPU execution providers, whichever this install offers.

On CUDA the output is bound to a CuPy buffer (IOBinding), so features never leave the device
before the kernels run on them. ONNX Runtime computes on a CuPy stream of ours (the providers'
`user_compute_stream`, on `device_id`), which follows the stream rule of base.py: the output is
allocated on it, it waits for the caller's queued work before writing, and it is synchronised at
the hand-over.
"""

from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return ("onnxruntime is not installed (pip install 'insid3[cpu]', or 'insid3[gpu-cu12]' / 'insid3[gpu-cu13]' "
                "for onnxruntime-gpu)")
    if options.precision != "fp32":
        return f"the onnxruntime backend runs the fp32 ONNX model only, not {options.precision}"
    return None


def runs_on_gpu_here(options: BackendOptions) -> bool:
    """True when this install has the CUDA provider and CuPy sees a device to hand us arrays on."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # cupy missing or no driver: the CUDA provider cannot hand us device arrays
        return False


def provider_list(on_gpu: bool, available: list[str], device_id: int, stream_ptr: int | None) -> list:
    """ONNX Runtime's providers, best first: on a GPU the TensorRT and CUDA ones this install has,
    each told the device and the compute stream (its options), then the CPU one."""
    options: dict[str, str] = {"device_id": str(device_id)}
    if stream_ptr is not None:
        options["user_compute_stream"] = str(stream_ptr)
    providers: list = [(p, dict(options)) for p in GPU_PROVIDERS if on_gpu and p in available]
    return [*providers, "CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import onnxruntime as ort

        super().__init__(bundle)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.num_threads:
            session_options.intra_op_num_threads = options.num_threads
        on_gpu = runs_on_gpu_here(options)
        self._device_id, self._stream = options.device_id, None
        if on_gpu:
            import cupy

            with cupy.cuda.Device(options.device_id):
                self._stream = cupy.cuda.Stream()  # blocking: ordered after the legacy null stream's work too
        providers = provider_list(on_gpu, ort.get_available_providers(), options.device_id,
                                  None if self._stream is None else self._stream.ptr)
        self._session = ort.InferenceSession(
            str(bundle.onnx_path), sess_options=session_options, providers=providers
        )
        self.providers = tuple(self._session.get_providers())
        if on_gpu and self.providers[0] in GPU_PROVIDERS:
            import cupy

            self.xp, self.device = cupy, f"cuda:{options.device_id}"

    def _device_scope(self) -> AbstractContextManager:
        return super()._device_scope() if self.xp is np else self.xp.cuda.Device(self._device_id)

    def _infer(self, pixel_values: np.ndarray) -> Any:
        if self.xp is np:
            (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})
            return out
        return self._run_on_device(pixel_values)

    def _run_on_device(self, pixel_values: np.ndarray) -> Any:
        meta, xp, stream = self.bundle.metadata, self.xp, self._stream
        stream.wait_event(xp.cuda.get_current_stream().record())  # after the caller's queued reads (base.py)
        with stream:  # the output's block comes from the writing stream's own pool
            out = xp.empty((pixel_values.shape[0], meta.num_patches, meta.embed_dim), xp.float32)
        binding = self._session.io_binding()
        binding.bind_cpu_input(INPUT_NAME, pixel_values)
        binding.bind_output(
            OUTPUT_NAME, "cuda", self._device_id, np.float32, tuple(out.shape), out.data.ptr
        )
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        stream.synchronize()  # the hand-over: complete for every stream and thread
        return out

    def synchronize(self) -> None:
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()

    def _release(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._session = self._stream = None


def load(bundle: Bundle, options: BackendOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(bundle, options)
