"""ONNX Runtime: TensorRT -> CUDA -> CPU execution providers, whichever this install offers.

On CUDA the output is bound to a CuPy buffer (IOBinding), so features never leave the device
before the kernels run on them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'insid3[cpu]', or 'insid3[gpu]' for onnxruntime-gpu)"
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
        providers = [p for p in GPU_PROVIDERS if on_gpu and p in ort.get_available_providers()]
        providers.append("CPUExecutionProvider")
        self._session = ort.InferenceSession(
            str(bundle.onnx_path), sess_options=session_options, providers=providers
        )
        self.providers = tuple(self._session.get_providers())
        self._device_id = options.device_id
        if on_gpu and self.providers[0] in GPU_PROVIDERS:
            import cupy

            self.xp, self.device = cupy, f"cuda:{options.device_id}"

    def _infer(self, pixel_values: np.ndarray) -> Any:
        if self.xp is np:
            (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})
            return out
        return self._run_on_device(pixel_values)

    def _run_on_device(self, pixel_values: np.ndarray) -> Any:
        meta = self.bundle.metadata
        out = self.xp.empty((pixel_values.shape[0], meta.num_patches, meta.embed_dim), self.xp.float32)
        binding = self._session.io_binding()
        binding.bind_cpu_input(INPUT_NAME, pixel_values)
        binding.bind_output(
            OUTPUT_NAME, "cuda", self._device_id, np.float32, tuple(out.shape), out.data.ptr
        )
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # ORT's CUDA stream is not CuPy's: wait before kernels read `out`
        return out

    def synchronize(self) -> None:
        if self.xp is not np:
            self.xp.cuda.get_current_stream().synchronize()


def load(bundle: Bundle, options: BackendOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(bundle, options)
