"""Doc §4: positional debiasing of patch features."""

from __future__ import annotations

import operator

from insid3.kernels.arrays import Array, KernelInputError, array_module, l2_normalize, require


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
    try:
        s = operator.index(svd_components)
    except TypeError:
        raise KernelInputError(f"debias: svd_components must be an int, got {svd_components!r}") from None
    if not 0 <= s <= basis.shape[1] or s >= channels:
        raise KernelInputError(
            f"debias: svd_components={s} must be in [0, min(K={basis.shape[1]}, C={channels} - 1)]"
        )
    if s == 0:
        return l2_normalize(features)
    flat = features.reshape(-1, channels)
    kept = xp.ascontiguousarray(basis[:, :s])
    return l2_normalize(flat - (flat @ kept) @ kept.T).reshape(features.shape)
