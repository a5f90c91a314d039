"""The one backend template: normalised pixels in, L2-normalised patch features out.

A backend runs the bundle's backbone and nothing else. Its features live in its array module
(`xp`): numpy on the CPU, cupy on the GPU, so the kernels that follow run where the features are.
`Backend.features` checks what goes in and what comes out; a backend implements only `_infer`
(and `synchronize` where it queues device work).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def features(self, pixel_values: np.ndarray) -> Any:
        """(B, 3, R, R) float32 normalised pixels -> (B, N, C) float32 features in `xp`."""
        meta = self.bundle.metadata
        check_pixel_batch(pixel_values, meta.resolution)
        batch = pixel_values.shape[0]
        if self.max_batch is not None and batch > self.max_batch:
            raise ValueError(f"{self.name} backend: batch {batch} exceeds its profile (max {self.max_batch})")
        out = self._infer(pixel_values)
        check_features(out, (batch, meta.num_patches, meta.embed_dim), self.name)
        return out

    @abstractmethod
    def _infer(self, pixel_values: np.ndarray) -> Any:
        """The backbone on a checked batch; `features` checks what this returns."""

    def synchronize(self) -> None:
        """Wait until queued device work is done; nothing to wait for where inference is synchronous."""
