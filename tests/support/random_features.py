"""Random features for the kernel tests: rows of unit length, as the backbone's normalised patches."""

from __future__ import annotations

import numpy as np


def unit_rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """A float32 array of `shape` drawn from `rng`, each row along the last axis of unit length."""
    x = rng.standard_normal(shape).astype(np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
