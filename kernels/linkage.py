"""Doc §7: average-linkage clustering of the target's patches, equal to sklearn's

    AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                            distance_threshold=1 - tau).fit(1 - clip(F F^T, -1, 1))

(labels equal up to renumbering). sklearn derives n_clusters_ = count(merge height >= 1 - tau)
+ 1, i.e. it keeps exactly the merges whose average distance is < 1 - tau, strictly.

Methods (peak memory at N = 4096: resident-set growth while clustering one ViT-L 1024 px image,
measured by the kernel benchmark; it includes the 64 MiB float32 distance or Gram matrix):
- "chain" (NumPy, Numba): a nearest-neighbour chain that only visits clusters joined by an edge
  of the "d < 1 - tau" graph and keeps float64 sums of distances for those (see
  linkage_chain.py); exact, reads the Gram matrix's upper triangle directly (no mirrored
  matrix, no distance matrix). Graphs with more than 5% of the pairs as edges go to the classic
  dense chain instead (linkage_dense_chain.py), also exact. 140 MiB: the Gram matrix + the
  float64 sums (kept per thread).
- "reciprocal" (NumPy or CuPy): parallel reciprocal-nearest-neighbour merging in float32 (see
  linkage_reciprocal.py); equal to sklearn except for cluster pairs whose average distance is
  within float32 rounding (~1e-6) of 1 - tau. 225 MiB: distances + the merged rows and the
  compacted matrix of the first round (both shrink with the rounds). No float64 N x N copy.
  It is the GPU path, and runs on NumPy too, which is how its CPU tests cover it.
- "auto": "reciprocal" for CuPy arrays (cuML has no average linkage; this keeps the matrix on
  the GPU); "chain" for NumPy.
sklearn itself: 369 MiB (int64 triangle indices, float32 and float64 condensed copies).

Numba is required, not optional: the CPU default, "chain", is Numba code, exact and the fastest
CPU method measured. A fallback for installs without Numba (fastcluster inside each connected
component of the graph, say) would be a second exact CPU path to keep equal to sklearn and
tested, for a case the package's dependencies already rule out; there is none.

Labels are canonical: clusters are numbered by their first (smallest-index) patch, so cluster 0
holds patch 0. Ties between exactly equal distances may be broken differently from sklearn
(scipy's nearest-neighbour chain visits candidates in its own order): "reciprocal" takes the
smallest patch index, as numpy/torch argmin; "chain" prefers its chain predecessor, then the
smallest index. A tie only changes the partition when the tied merges lead to different
clusters below 1 - tau.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from insid3.kernels.arrays import Array, KernelInputError, array_module, require
from insid3.kernels.linkage_reciprocal import reciprocal_linkage

Method = Literal["auto", "chain", "reciprocal"]
METHODS = ("auto", "chain", "reciprocal")


def distance_threshold(tau: float) -> float:
    """1 - tau as the reference hands it to sklearn (float64)."""
    tau = float(tau)
    if not 0.0 < tau <= 1.0:
        raise KernelInputError(f"average_linkage_clusters: tau={tau} must be in (0, 1]")
    return float(1.0 - tau)


def cosine_distances(features: Array) -> Array:
    """1 - clip(F F^T, -1, 1) in float32, as the reference computes it; exactly symmetric."""
    xp = array_module(features)
    distances = gram_matrix(features)
    xp.clip(distances, -1, 1, out=distances)
    xp.subtract(xp.float32(1), distances, out=distances)
    return distances


# Rows per strip when mirroring the triangle: a 64-row strip and its transpose stay in cache
# (measured 42 ms at N = 4096; 128 rows: 49 ms, 256: 132 ms, 32: 65 ms).
MIRROR_STRIP = 64


def gram_upper(features: Array) -> np.ndarray:
    """F F^T (N, N) float32 of NumPy features with only the upper triangle (and the diagonal)
    valid: one BLAS ssyrk, a symmetric rank-k update with half the flops of a GEMM, writing the
    lower triangle in column-major order, i.e. the upper triangle of the row-major transpose."""
    from scipy.linalg.blas import ssyrk  # scipy is a runtime dependency

    # features.T of a C-contiguous (N, C) array is a Fortran (C, N) array: no copy for BLAS.
    return ssyrk(1.0, np.ascontiguousarray(features).T, trans=1, lower=1).T


def gram_matrix(features: Array) -> Array:
    """F F^T (N, N) float32, full and exactly symmetric.

    NumPy: `gram_upper` (one BLAS ssyrk), then mirrored strip by strip. NumPy's own F @ F.T
    also calls syrk but mirrors element by element: 573 ms against 312 + 42 ms here (N = 4096, C = 1024, one thread), with identical values
    (OpenBLAS gives the same sums for syrk and gemm). CuPy: the plain matmul (cuBLAS), whose
    (i, j) and (j, i) entries may differ in the last bit (different tiles), so its upper triangle
    is mirrored onto the lower one.
    """
    xp = array_module(features)
    if xp.__name__ != "numpy":
        product = features @ features.T
        index = xp.arange(product.shape[0])
        return xp.where(index[:, None] <= index[None, :], product, product.T)
    gram = gram_upper(features)
    n = gram.shape[0]
    for start in range(0, n, MIRROR_STRIP):
        stop = min(start + MIRROR_STRIP, n)
        gram[stop:, start:stop] = gram[start:stop, stop:].T
        block = gram[start:stop, start:stop]
        below = np.tril_indices(stop - start, -1)
        block[below] = block.T[below]
    return gram


def canonical_labels(root: Array) -> Array:
    """Labels 0..K-1 numbered by first patch, from root[i] = smallest patch index of i's cluster."""
    xp = array_module(root)
    is_root = root == xp.arange(root.shape[0])
    rank = xp.cumsum(is_root) - 1
    return rank[root].astype(xp.int64)


def resolve_method(method: str, xp) -> str:
    """The method that runs for `method` on arrays of module `xp`: "auto" is "reciprocal" on
    CuPy and "chain" on NumPy; "chain" on CuPy arrays is an error (no hidden transfers)."""
    if method not in METHODS:
        raise KernelInputError(f"average_linkage_clusters: method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "reciprocal" if xp.__name__ == "cupy" else "chain"
    if method == "chain" and xp.__name__ != "numpy":
        raise KernelInputError(
            "average_linkage_clusters: method='chain' runs on the CPU and needs NumPy arrays; use "
            "'reciprocal' for CuPy arrays (no hidden device transfers)"
        )
    return method


def average_linkage_clusters(
    features: Array, tau: float, *, method: Method = "auto", use_cuda_kernels: bool = True
) -> Array:
    """Cluster labels (N,) int64 of (N, C) float32 L2-normalised features, canonical (see the
    module docstring), on the features' device.

    use_cuda_kernels: for "reciprocal" on CuPy arrays, run the CUDA kernels of
    linkage_reciprocal.cu (same values as the composed calls); ignored for NumPy.
    """
    require("average_linkage_clusters", "features", features, ndim=2, dtype="float32")
    xp = array_module(features)
    resolved = resolve_method(method, xp)
    threshold = distance_threshold(tau)
    n = features.shape[0]
    if n == 0:
        raise KernelInputError("average_linkage_clusters: features has no rows (shape (0, C))")
    if n == 1:
        return xp.zeros(1, dtype=xp.int64)
    if resolved == "chain":
        # Imported here: Numba's import (and its compiled-kernel cache) is paid by the CPU path only.
        from insid3.kernels.linkage_chain import chain_linkage

        root, _ = chain_linkage(gram_upper(features), threshold)
    else:
        root, _ = reciprocal_linkage(cosine_distances(features), threshold, use_cuda_kernels=use_cuda_kernels)
    return canonical_labels(root)
