"""Doc §4: positional debiasing of patch features.

`debias` is the step as the doc writes it, in the original C coordinates (reference side,
tests). `DebiasFrame` / `debiased_coordinates` give the same vectors in D = C - s orthonormal
coordinates of span(B)^perp, where the per-target work is cheaper (see DebiasFrame).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from insid3.kernels.arrays import Array, KernelInputError, array_module, l2_normalize, require


def _components(svd_components: int, available: int, channels: int, function: str) -> int:
    try:
        s = operator.index(svd_components)
    except TypeError:
        raise KernelInputError(f"{function}: svd_components must be an int, got {svd_components!r}") from None
    if not 0 <= s <= available or s >= channels:
        raise KernelInputError(
            f"{function}: svd_components={s} must be in [0, min(K={available}, C={channels} - 1)]"
        )
    return s


def debias(features: Array, basis: Array, svd_components: int) -> Array:
    """normalise(F - (F B) B^T) with B = basis[:, :svd_components]; svd_components = 0 only
    renormalises.

    features: (..., C) float32, L2-normalised patch features (any leading shape).
    basis: (C, K) float32, columns = left singular vectors of the positional subspace, in order.
    Cost 4 * N * C * s flops, against 2 * N * C^2 for the reference's (I - B B^T) X.
    """
    require("debias", "features", features, min_ndim=1, dtype="float32")
    require("debias", "basis", basis, ndim=2, dtype="float32")
    xp = array_module(features, basis)
    channels = features.shape[-1]
    if basis.shape[0] != channels:
        raise KernelInputError(
            f"debias: basis has shape {tuple(basis.shape)} but features have C = {channels} "
            f"(shape {tuple(features.shape)}); expected basis (C, K) with the same C"
        )
    s = _components(svd_components, basis.shape[1], channels, "debias")
    if s == 0:
        return l2_normalize(features)
    flat = features.reshape(-1, channels)
    kept = xp.ascontiguousarray(basis[:, :s])
    return l2_normalize(flat - (flat @ kept) @ kept.T).reshape(features.shape)


@dataclass(frozen=True, eq=False)
class DebiasFrame:
    """Orthonormal coordinates in which the per-target work of doc §4-§8 runs.

    Every use of debiased features (doc §4) is a dot product between them (forward similarity,
    backward nearest neighbours, prototypes against p), and debiased vectors live in span(B)^perp.
    With Q (C, D) an orthonormal basis of span(B)^perp, P F = Q (Q^T F), so
    normalise(P F) = Q normalise(Q^T F) and <F~_a, F~_b> = <Q^T F~_a, Q^T F~_b>: the D = C - s
    coordinates carry every dot product of doc §4-§8. One (N x C x D) GEMM replaces the two
    (N x C x s) GEMMs of `debias`, and backward matching shrinks from C to D wide.

    complement: Q (C, D) float32, or None when s < C / 3: there the two thin GEMMs of `debias`
    (4 N C s flops) are cheaper than N x C x (C - s) and the coordinates stay the original
    ones (D = C, `debias` itself).

    Equal to `debias` up to float32 rounding (~1e-7): a decision flips only where two values
    it compares are that close (a nearest-neighbour tie, a similarity at exactly 0), the same
    caveat as the clustering's ties.
    """

    basis: Array  # (C, s) the kept positional basis B
    complement: Array | None  # (C, C - s) Q, or None: original coordinates

    @property
    def svd_components(self) -> int:
        return int(self.basis.shape[1])

    @property
    def width(self) -> int:
        """D: the width of debiased coordinates."""
        return int(self.basis.shape[0] if self.complement is None else self.complement.shape[1])


def debias_frame(basis: Array, svd_components: int) -> DebiasFrame:
    """The frame for basis[:, :svd_components] (validated as in `debias`); built once per
    backbone, resolution and s (a complete QR of B, float64)."""
    require("debias_frame", "basis", basis, ndim=2, dtype="float32")
    xp = array_module(basis)
    channels = basis.shape[0]
    s = _components(svd_components, basis.shape[1], channels, "debias_frame")
    kept = xp.ascontiguousarray(basis[:, :s])
    if 3 * s < channels:
        return DebiasFrame(basis=kept, complement=None)
    # Complete QR of B (float64): its first s columns span span(B), the last C - s are an
    # orthonormal basis of the complement (B has orthonormal, hence independent, columns).
    q, _ = xp.linalg.qr(kept.astype(xp.float64), mode="complete")
    complement = xp.ascontiguousarray(q[:, s:].astype(xp.float32))
    return DebiasFrame(basis=kept, complement=complement)


def debiased_coordinates(features: Array, frame: DebiasFrame) -> Array:
    """Doc §4 in the frame's coordinates: normalise(Q^T F) (..., D), = Q^T normalise(P F).

    features: (..., C) float32 L2-normalised patch features (any leading shape).
    """
    require("debiased_coordinates", "features", features, min_ndim=1, dtype="float32")
    channels = frame.basis.shape[0]
    if features.shape[-1] != channels:
        raise KernelInputError(
            f"debiased_coordinates: features have C = {features.shape[-1]} (shape {tuple(features.shape)}) "
            f"but the frame was built for C = {channels}"
        )
    if frame.complement is None:
        return debias(features, frame.basis, frame.svd_components)
    array_module(features, frame.complement)
    flat = features.reshape(-1, channels)
    return l2_normalize(flat @ frame.complement).reshape(*features.shape[:-1], frame.width)
