"""The one backend template: normalised pixels in, L2-normalised patch features out.

A backend runs the bundle's backbone and nothing else. Its features live in its array module
(`xp`): numpy on the CPU, cupy on the GPU, so the kernels that follow run where the features are.
`Backend.features` checks what goes in and what comes out; a backend implements only `_infer`
(and `synchronize` where it queues device work, `_device_scope` where it runs on a GPU, `_release`
where it holds what `close` must let go of).

Lifecycle (after Polygraphy's runners): a backend holds its model, sessions, buffers and streams
from construction until `close()` (or the end of a `with` block); closing twice is harmless, and
`features` on a closed backend is a RuntimeError, not a crash inside a freed library object.

Stream rule (GPU backends; the one place it is written down). CuPy's memory pool hands a freed
block to the next allocation on the same stream at once, without waiting for kernels still queued
that read it; ONNX Runtime and TensorRT write on streams of their own; `segment_stream` encodes
on a worker thread while the caller's thread still has decoding kernels queued. So:
1. memory that another library's stream writes is allocated with that stream current
   (`with stream:`), never from the caller's stream's blocks;
2. before that stream writes, it waits for the work queued so far on the calling thread's current
   stream (an event: `stream.wait_event(cupy.cuda.get_current_stream().record())`), which on
   CuPy's default (legacy) null stream is all blocking-stream work of the device;
3. at the hand-over the writing stream is synchronised once, so `features` returns arrays that
   are complete for any stream in any thread; `synchronize()` then waits only for the caller's.
And every call runs on the backend's own device (`_device_scope`): CuPy's and torch's current
device is per thread, and the worker thread's starts at device 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from insid3.errors import InputImageError
from insid3.format.bundle import Bundle
from insid3.format.tensors import INPUT_NAME, OUTPUT_NAME


@dataclass(frozen=True)
class BackendOptions:
    """What a user may choose beyond the backend's name."""

    precision: str = "fp32"  # CPU backends: "fp32" or "bf16" (OpenVINO on AMX CPUs); torch-cuda: also "fp16"
    device_id: int = 0
    num_threads: int | None = None  # None: the library's default (all cores)
    torch_compile: bool = False  # torch-cuda: the forward through torch.compile (slow first call)
    cuda_graph_batch_sizes: tuple[int, ...] = ()  # torch-cuda: replay a CUDA graph for these batch sizes


def check_pixel_batch(pixel_values: np.ndarray, resolution: int) -> None:
    """InputImageError unless (B, 3, R, R) float32."""
    expected = ("B", 3, resolution, resolution)
    if (
        pixel_values.ndim != 4
        or pixel_values.shape[1:] != expected[1:]
        or pixel_values.dtype != np.float32
    ):
        raise InputImageError(
            f"{INPUT_NAME}: expected float32 {expected}, got {pixel_values.dtype} {pixel_values.shape}"
        )


def check_features(features: Any, expected_shape: tuple[int, int, int], backend: str) -> None:
    """RuntimeError naming the output tensor unless `features` is float32 of `expected_shape`:
    a backend that returns anything else is broken, not its caller."""
    shape = tuple(features.shape)
    if shape != expected_shape:
        raise RuntimeError(
            f"{backend} backend: output {OUTPUT_NAME!r} has shape {shape}, expected {expected_shape}"
        )
    if features.dtype != np.float32:
        raise RuntimeError(f"{backend} backend: output {OUTPUT_NAME!r} is {features.dtype}, expected float32")


class Backend(ABC):
    """Subclasses set `name` and, where they differ from the CPU defaults below, `device`,
    `precision`, `xp` and `max_batch` (in __init__ when they depend on the bundle or options)."""

    name: ClassVar[str]
    device: str = "cpu"  # or "cuda:0"
    precision: str = "fp32"
    xp: ModuleType = np
    max_batch: int | None = None  # None: any batch size
    _closed: bool = False  # set by close(); a class default, so subclasses need not call __init__ first

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    @property
    def closed(self) -> bool:
        return self._closed

    def features(self, pixel_values: np.ndarray) -> Any:
        """(B, 3, R, R) float32 normalised pixels -> (B, N, C) float32 features in `xp`."""
        if self._closed:
            raise RuntimeError(f"{self.name} backend: closed (features asked after close())")
        meta = self.bundle.metadata
        check_pixel_batch(pixel_values, meta.resolution)
        batch = pixel_values.shape[0]
        if self.max_batch is not None and batch > self.max_batch:
            raise ValueError(f"{self.name} backend: batch {batch} exceeds its profile (max {self.max_batch})")
        with self._device_scope():
            out = self._infer(pixel_values)
        check_features(out, (batch, meta.num_patches, meta.embed_dim), self.name)
        return out

    @abstractmethod
    def _infer(self, pixel_values: np.ndarray) -> Any:
        """The backbone on a checked batch; `features` checks what this returns."""

    def _device_scope(self) -> AbstractContextManager:
        """Entered around every `_infer`: the backend's device made current in the calling thread."""
        return nullcontext()

    def synchronize(self) -> None:
        """Wait until queued device work is done; nothing to wait for where inference is synchronous."""

    def close(self) -> None:
        """Let go of the model, sessions, buffers and streams (`_release`); a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        with self._device_scope():
            self._release()

    def _release(self) -> None:
        """What `close` frees; the backend's own attributes only (the base holds nothing)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
