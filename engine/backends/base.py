"""The one backend protocol: normalised pixels in, L2-normalised patch features out.

A backend runs the bundle's backbone and nothing else. Its features live in its array module
(`xp`): numpy on the CPU, cupy on the GPU, so the kernels that follow run where the features are.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from insid3.format.bundle import Bundle
from insid3.errors import InputImageError


@dataclass(frozen=True)
class BackendOptions:
    """What a user may choose beyond the backend's name."""

    precision: str = "fp32"  # CPU backends: "fp32" or "bf16" (OpenVINO on AMX CPUs)
    device_id: int = 0
    num_threads: int | None = None  # None: the library's default (all cores)


@runtime_checkable
class Backend(Protocol):
    name: str
    device: str  # "cpu" or "cuda:0"
    precision: str
    xp: ModuleType
    max_batch: int | None  # None: any batch size

    def features(self, pixel_values: np.ndarray) -> Any:
        """(B, 3, R, R) float32 normalised pixels -> (B, N, C) float32 features in `xp`."""
        ...

    def synchronize(self) -> None:
        """Wait until queued device work is done (no-op on the CPU)."""
        ...


def check_pixel_batch(pixel_values: np.ndarray, resolution: int) -> None:
    expected = ("B", 3, resolution, resolution)
    if (
        pixel_values.ndim != 4
        or pixel_values.shape[1:] != expected[1:]
        or pixel_values.dtype != np.float32
    ):
        raise InputImageError(
            f"pixel_values: expected float32 {expected}, got {pixel_values.dtype} {pixel_values.shape}"
        )


def check_features(features: Any, bundle: Bundle, batch: int, backend: str) -> None:
    meta = bundle.metadata
    expected = (batch, meta.num_patches, meta.embed_dim)
    if tuple(features.shape) != expected:
        raise RuntimeError(
            f"{backend} backend: output 'features' has shape {tuple(features.shape)}, expected {expected}"
        )
