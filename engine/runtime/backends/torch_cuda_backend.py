"""torch on a CUDA device: for GPU machines with torch and CuPy but no TensorRT.

It rebuilds the bundle's exact model (as the `torch` backend does) on `cuda:N` in fp32, bf16 or
fp16 (`precision`). The reduced precisions follow the TensorRT plan: matrix products in 16 bits,
LayerNorm, softmax, RoPE, the residual stream and the final L2 norm in fp32
(export/torch_precision.py, whose lines the CPU tests run). Attention is
`scaled_dot_product_attention` limited to the flash and memory-efficient kernels. Options, off by
default: `torch_compile` (the forward through torch.compile) and `cuda_graph_batch_sizes` (a CUDA
graph per size, captured when the backend loads, replayed after).

Features leave torch through DLPack (`cupy.from_dlpack`): the CuPy array is the same device
memory, no copy to the host. torch's stream is synchronised once before they are returned (the
hand-over of base.py's stream rule), so kernels on any CuPy stream, in any thread (segment_stream
decodes on another thread), read finished features; `synchronize` then waits for CuPy's stream only.

CUDA graphs are captured in __init__, in the thread that loads the backend, before any worker
thread runs (torch's "global" capture mode errors on CUDA calls other threads make during a
capture), and with capture_error_mode="thread_local" so that CuPy work another thread may queue
meanwhile is not an error; replays are safe from any thread.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import numpy as np

from insid3.engine.runtime.backends.base import Backend, BackendOptions
from insid3.format.bundle import Bundle
from insid3.gpu_stack import stack_mismatch

log = logging.getLogger("insid3.engine")
GRAPH_WARMUP_CALLS = 3  # before a capture: cuBLAS handles, kernel selection, lazy module loading


def unavailable_reason(bundle: Bundle, options: BackendOptions) -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (a CUDA build of torch, then 'insid3[export]')"
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'insid3[gpu-cu12]' or 'insid3[gpu-cu13]', by the driver's CUDA)"
    from insid3.export.torch_precision import PRECISIONS

    if options.precision not in PRECISIONS:
        return f"the torch-cuda backend runs {', '.join(PRECISIONS)}, not {options.precision}"
    if any(size < 1 for size in options.cuda_graph_batch_sizes):
        return f"CUDA graph batch sizes must be >= 1, got {options.cuda_graph_batch_sizes}"
    mismatch = stack_mismatch()
    if mismatch is not None and mismatch.blocking:
        return mismatch.line
    problem = _device_problem(options.device_id)
    if problem is not None and mismatch is not None:
        return f"{problem} ({mismatch.line})"
    if mismatch is not None:
        log.warning("%s", mismatch.line)
    return problem


def _device_problem(device_id: int) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if device_id >= torch.cuda.device_count():
        return f"cuda:{device_id} does not exist (torch sees {torch.cuda.device_count()} CUDA devices)"
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # a CuPy wheel that does not fit this machine's CUDA raises its own types
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"cupy cannot use the CUDA device ({exc.__class__.__name__}: {first_line})"
    return None


def runs_on_gpu_here(options: BackendOptions) -> bool:
    return True  # whenever it can run at all


class CudaGraphForward:
    """`forward` replayed from a CUDA graph for the given batch sizes; other sizes run it directly.

    Every size is captured up front (`capture`, called when the backend loads: never in a worker
    thread), after a few warm-up calls on a side stream as torch's CUDA graph notes prescribe, into
    static input and output buffers; a replay copies the pixels in and a clone of the output out
    (the next replay overwrites it)."""

    CAPTURE_ERROR_MODE = "thread_local"  # only this thread's unsafe calls break the capture

    def __init__(self, forward: Callable[[Any], Any], batch_sizes: tuple[int, ...]) -> None:
        import torch

        self._torch, self._forward, self._batch_sizes = torch, forward, tuple(sorted(set(batch_sizes)))
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}  # batch -> (graph, static input, static output)

    @property
    def captured(self) -> tuple[int, ...]:
        return tuple(sorted(self._graphs))

    def capture(self, example_shape: tuple[int, ...], device: Any) -> None:
        """A graph for every batch size, on zeros of (batch, *example_shape) on `device`."""
        for batch in self._batch_sizes:
            if batch not in self._graphs:
                self._graphs[batch] = self._capture(self._torch.zeros((batch, *example_shape), device=device))

    def __call__(self, pixels):
        batch = pixels.shape[0]
        if batch not in self._graphs:
            return self._forward(pixels)
        graph, static_in, static_out = self._graphs[batch]
        static_in.copy_(pixels)
        graph.replay()
        return static_out.clone()

    def _capture(self, pixels):
        torch = self._torch
        static_in = pixels.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_CALLS):
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=self.CAPTURE_ERROR_MODE):
            static_out = self._forward(static_in)
        return graph, static_in, static_out


class TorchCudaBackend(Backend):
    name = "torch-cuda"

    def __init__(self, bundle: Bundle, options: BackendOptions) -> None:
        import cupy
        import torch

        from insid3.export import build_backbone
        from insid3.export.torch_precision import forward_function, fused_attention_backends, prepare_model

        super().__init__(bundle)
        meta = bundle.metadata
        self._torch = torch
        self._cuda = torch.device("cuda", options.device_id)
        torch.cuda.set_device(self._cuda)
        cupy.cuda.Device(options.device_id).use()
        self.xp, self.device, self.precision = cupy, f"cuda:{options.device_id}", options.precision
        model = build_backbone(meta.arch, meta.weights, resolution=meta.resolution)
        model = prepare_model(model, options.precision).to(self._cuda)
        forward = forward_function(
            model, options.precision, attention_backends=fused_attention_backends(),
            compile_backend="inductor" if options.torch_compile else None,
        )
        batch_sizes = tuple(options.cuda_graph_batch_sizes)
        self._forward = CudaGraphForward(forward, batch_sizes) if batch_sizes else forward
        if batch_sizes:
            with torch.inference_mode():
                self._forward.capture((3, meta.resolution, meta.resolution), self._cuda)

    def _device_scope(self) -> AbstractContextManager:
        """Both libraries' current device is per thread: set both (the worker thread starts at 0)."""
        scope = ExitStack()
        scope.enter_context(self._torch.cuda.device(self._cuda))
        scope.enter_context(self.xp.cuda.Device(self._cuda.index))
        return scope

    def _infer(self, pixel_values: np.ndarray) -> Any:
        torch = self._torch
        with torch.inference_mode():
            features = self._forward(torch.from_numpy(pixel_values).to(self._cuda))  # [B, N, C] fp32
        torch.cuda.current_stream(self._cuda).synchronize()  # the hand-over (base.py's stream rule)
        return self.xp.from_dlpack(features)  # the same device memory: no copy

    def synchronize(self) -> None:
        """CuPy's current stream only: torch's work was synchronised at the hand-over in `_infer`."""
        self.xp.cuda.get_current_stream().synchronize()

    def _release(self) -> None:
        self._torch.cuda.current_stream(self._cuda).synchronize()
        self._forward = None
        self._torch.cuda.empty_cache()


def load(bundle: Bundle, options: BackendOptions) -> TorchCudaBackend:
    return TorchCudaBackend(bundle, options)
