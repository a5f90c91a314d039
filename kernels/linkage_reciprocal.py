"""Average linkage by parallel reciprocal-nearest-neighbour merging (the GPU path; any array module).

Each round merges every pair of clusters that are each other's nearest neighbour and closer
than the threshold, then updates distances by the Lance-Williams rule for average linkage,
d(i+j, m) = (n_i d(i, m) + n_j d(j, m)) / (n_i + n_j). Average linkage is reducible
(d(i+j, m) >= min(d(i, m), d(j, m))), so (a) merging all reciprocal pairs at once yields the
same merges as the sequential algorithm, and (b) a cluster's nearest neighbour only changes
when that neighbour merged: each round re-searches only those rows, and a cluster whose nearest
distance is >= the threshold can never merge again. The loop stops when no reciprocal pair is
below the threshold; with monotone merge heights that is exactly the set of merges sklearn keeps
(distance < threshold, strictly).

Precision: distances and updates are float32 (no float64 N x N copy). sklearn/scipy average in
float64, so a cluster pair whose average distance lies within ~1e-6 of 1 - tau (float32 rounding
of a few updates) may be merged by one and not the other; otherwise the partitions are equal.

Memory: the N x N float32 matrix (64 MiB at N = 4096) plus, in a round, the P x N merged rows
(P = pairs merged) and the next, compacted matrix built next to it (two more <= N x N float32
buffers in the first round, shrinking after): 225 MiB measured at N = 4096.

`merge_rows` and `rows_argmin` have CUDA kernels in linkage_reciprocal.cu with the same float32
rounding (no FMA contraction); the functions here are their NumPy twins and run on CuPy too.
"""

from __future__ import annotations

import math

import numpy as np

from insid3.kernels.arrays import Array, array_module


def float32_limit(threshold: float) -> np.float32:
    """Smallest float32 L with float64(L) >= threshold, so that for float32 d:
    d < L  <=>  float64(d) < threshold (sklearn compares float64 distances to a float64 threshold)."""
    limit = np.float32(threshold)
    if float(limit) < threshold:
        limit = np.nextafter(limit, np.float32(np.inf))
    return limit


def rows_argmin(distances: Array, rows: Array, nearest: Array, nearest_distance: Array) -> None:
    """For each row r in rows: nearest[r] = argmin_m D[r, m] (first index on ties, like
    numpy/torch argmin), nearest_distance[r] = that minimum. Writes in place."""
    xp = array_module(distances)
    block = xp.take(distances, rows, axis=0)
    index = xp.argmin(block, axis=1)
    nearest[rows] = index
    nearest_distance[rows] = block[xp.arange(block.shape[0]), index]


def merge_rows(distances: Array, first: Array, second: Array, sizes: Array) -> Array:
    """Distances from each merged cluster (first[p] + second[p]) to every current cluster: (P, N).

    Unmerged m: (n_i D[i, m] + n_j D[j, m]) / (n_i + n_j), float32 ops in that order.
    Between two merged clusters p, q: the row rule from the pair with the smaller first index,
    then the column rule with the other pair, so the value is the same from both sides.
    Columns of absorbed clusters (second) and the diagonal are +inf.
    """
    xp = array_module(distances)
    n_first = sizes[first][:, None]
    n_second = sizes[second][:, None]
    total = n_first + n_second
    rows = (n_first * xp.take(distances, first, axis=0) + n_second * xp.take(distances, second, axis=0)) / total
    # Block between merged clusters, computed from row p's side, then made canonical.
    from_p = (n_first.T * xp.take(rows, first, axis=1) + n_second.T * xp.take(rows, second, axis=1)) / total.T
    block = xp.where(first[:, None] < first[None, :], from_p, from_p.T)
    rows[:, first] = block
    rows[:, second] = xp.inf
    return rows


def compact(distances: Array, kept: Array, new_position: Array, first: Array, rows: Array) -> Array:
    """The next round's matrix over the kept clusters (ascending old positions): old distances
    with the merged rows and columns replaced by `rows`, built from row and column gathers only.

    Writing P columns of a row-major matrix touches every cache line of it, and NumPy's fancy
    column assignment runs at ~30 ns per element; gathering columns from [rows | merged^T] reads
    each row once instead, and drops absorbed and frozen clusters in the same pass.
    new_position[old] = position of a kept cluster in the new matrix.
    """
    xp = array_module(distances)
    n, pairs = distances.shape[0], first.shape[0]
    block = xp.take(distances, kept, axis=0)
    block[new_position[first]] = rows
    widened = xp.concatenate([block, xp.take(rows, kept, axis=1).T], axis=1)
    del block
    columns = kept.copy()
    columns[new_position[first]] = n + xp.arange(pairs)
    return xp.take(widened, columns, axis=1)


def _raw_kernels(xp, use_cuda_kernels: bool):
    if not use_cuda_kernels or xp.__name__ != "cupy":
        return None
    from insid3.kernels.cuda import linkage_kernels

    return linkage_kernels()


def reciprocal_linkage(distances: Array, threshold: float, *, use_cuda_kernels: bool = True) -> tuple[Array, int]:
    """Average-linkage clusters of a symmetric (N, N) float32 distance matrix cut at
    `threshold` (merge while distance < threshold). The matrix's diagonal is overwritten.

    Returns (root, rounds): root[i] = smallest patch index of i's cluster; rounds = merge rounds.
    use_cuda_kernels: with CuPy input, compute merged rows and nearest neighbours with the CUDA
    kernels of linkage_reciprocal.cu when they compile (NumPy input always uses the twins).

    The working matrix holds only clusters that can still merge: after each round the absorbed
    clusters and the frozen ones (nearest distance >= threshold; by reducibility they stay so)
    are dropped, so later rounds work on a much smaller matrix. Positions keep patch order, so
    "first index" tie-breaking means "smallest patch index".
    """
    xp = array_module(distances)
    n = distances.shape[0]
    raw = _raw_kernels(xp, use_cuda_kernels)
    limit = float32_limit(threshold)
    position = xp.arange(n, dtype=xp.int64)
    distances[position, position] = xp.inf
    roots = position.copy()  # position -> smallest patch index of the cluster held there
    parent = position.copy()  # patch-indexed union-find forest, roots point to themselves
    sizes = xp.ones(n, dtype=xp.float32)
    nearest = xp.argmin(distances, axis=1)
    nearest_distance = distances[position, nearest]
    rounds = 0
    while True:
        live = nearest_distance < limit
        mutual = live & (nearest[nearest] == position) & (position < nearest)
        first = xp.nonzero(mutual)[0]  # host sync: the loop's stopping test
        if first.shape[0] == 0:
            break
        rounds += 1
        second = nearest[first]
        rows = merge_rows(distances, first, second, sizes) if raw is None else raw.merge_rows(distances, first, second, sizes)
        sizes[first] += sizes[second]
        parent[roots[second]] = roots[first]
        merged = xp.zeros(distances.shape[0], dtype=bool)
        merged[first] = True
        merged[second] = True
        keep = live.copy()
        keep[second] = False
        kept = xp.nonzero(keep)[0]
        # Rows whose nearest neighbour took part in a merge (the merged rows among them);
        # by reducibility every other row keeps its nearest neighbour.
        stale = (merged[nearest] & live)[kept]
        new_position = xp.full(distances.shape[0], -1, dtype=xp.int64)
        new_position[kept] = xp.arange(kept.shape[0])
        distances = compact(distances, kept, new_position, first, rows)
        del rows
        roots, sizes = roots[kept], sizes[kept]
        nearest, nearest_distance = new_position[nearest[kept]], nearest_distance[kept]
        position = xp.arange(kept.shape[0], dtype=xp.int64)
        stale_rows = xp.nonzero(stale)[0]
        if raw is None:
            rows_argmin(distances, stale_rows, nearest, nearest_distance)
        else:
            raw.rows_argmin(distances, stale_rows, nearest, nearest_distance)
    # Every merge points the absorbed root at the surviving one; chains are at most `rounds`
    # long, so ceil(log2(rounds)) + 1 pointer-jumping steps reach the roots (no host sync).
    for _ in range(math.ceil(math.log2(rounds)) + 1 if rounds else 0):
        parent = parent[parent]
    return parent, rounds
