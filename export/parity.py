"""How closely one feature tensor reproduces another (after optimum's ONNX validation)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Parity:
    """Max abs error and min per-patch cosine of `actual` against `expected` ([B, N, C] features)."""

    against: str  # what the expected features came from: "torch", "onnxruntime"
    max_abs_error: float
    min_cosine: float
    batch: int

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"max abs error {self.max_abs_error:.2e}, min cosine {self.min_cosine:.6f} vs {self.against}"


def compare_features(actual: np.ndarray, expected: np.ndarray, *, against: str) -> Parity:
    if actual.shape != expected.shape:
        raise ValueError(f"features of shape {actual.shape} cannot be compared with {expected.shape}")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    dots = np.sum(a * e, axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(e, axis=-1)
    cosine = dots / np.maximum(norms, 1e-12)
    return Parity(
        against=against,
        max_abs_error=float(np.max(np.abs(a - e))),
        min_cosine=float(np.min(cosine)),
        batch=int(actual.shape[0]),
    )
