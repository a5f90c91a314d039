"""OpenVINO on the CPU: reads the bundle's ONNX; bf16 on CPUs with AMX/AVX512-BF16.

Offered because ONNX Runtime's CPU provider is the slowest way to run this ViT on a CPU here.
bf16 changes the features slightly: the benchmark reports its masks against the fp32 path.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    if importlib.util.find_spec("openvino") is None:
        return "openvino is not installed (pip install 'insid3[openvino]')"
    if options.precision not in PRECISION_HINTS:
        return f"openvino runs fp32 or bf16 here, not {options.precision}"
    if options.precision == "bf16" and "BF16" not in cpu_capabilities():
        return "this CPU has no bf16 support (OpenVINO lists no BF16 capability)"
    return None


def runs_on_gpu_here(options: BackendOptions) -> bool:
    return False  # the CPU plugin only


def cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import openvino as ov

        super().__init__(bundle)
        self.precision = options.precision
        config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[options.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if options.num_threads:
            config["INFERENCE_NUM_THREADS"] = options.num_threads
        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(str(bundle.onnx_path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(OUTPUT_NAME)

    def _infer(self, pixel_values: np.ndarray) -> np.ndarray:
        result = self._request.infer({INPUT_NAME: pixel_values})
        # The request reuses its output buffer on the next call: copy it out.
        return np.array(result[self._output], dtype=np.float32, copy=True)

    def _release(self) -> None:
        self._request = self._compiled = self._output = None


def load(bundle: Bundle, options: BackendOptions) -> OpenVinoBackend:
    return OpenVinoBackend(bundle, options)
