"""The deployment shapes the kernel benchmark runs at, and their synthetic features."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from insid3.benchmarks.synthetic import synthetic_patch_features

TAU, MERGE_THRESHOLD = 0.6, 0.2
ORIGINAL_SIZE = (480, 640)
# Weight of a direction shared by every patch in the "dense" clustering case: every pair is then
# closer than 1 - tau, as for random-init ViT features (81% of the pairs at ViT-S 768 px), and
# the clustering takes linkage_dense_chain's path instead of the sparse chain.
DENSE_SHARED_WEIGHT = 1.5


@dataclass(frozen=True)
class Shape:
    name: str
    grid: int  # h = w
    channels: int
    resolution: int
    svd_components: int

    @property
    def patches(self) -> int:
        return self.grid * self.grid


VIT_L_1024 = Shape("ViT-L 1024px", 64, 1024, 1024, 500)
VIT_S_768 = Shape("ViT-S 768px", 48, 384, 768, 180)


def features_for(shape: Shape, view: int = 0) -> np.ndarray:
    """One view of the benchmark scene; views differ only in their noise."""
    return synthetic_patch_features(shape.grid, shape.grid, shape.channels, centres=40, noise=0.65, seed=0,
                                    noise_seed=None if view == 0 else 1000 + view)


def dense_features_for(shape: Shape) -> np.ndarray:
    features = features_for(shape).astype(np.float64)
    shared = np.random.default_rng(7).standard_normal(shape.channels)
    features += DENSE_SHARED_WEIGHT * shared / np.linalg.norm(shared)
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out
