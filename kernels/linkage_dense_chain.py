"""Average linkage by the classic nearest-neighbour chain on a dense condensed matrix (the exact
CPU path for dense "< threshold" graphs; NumPy + Numba).

When most patch pairs are closer than the threshold (random-init ViT features: 81% of the pairs
at tau = 0.6), neighbour lists are as long as the active set and linkage_chain.py's bookkeeping
costs more than it saves. Then the Lance-Williams rule on every active pair, as scipy and
fastcluster do it, is faster: d(A+B, K) = (|A| d(A, K) + |B| d(B, K)) / (|A| + |B|) in float64 on
scipy's condensed layout, written straight from the Gram matrix's upper triangle (no mirrored
matrix, no float32 distance matrix, no float64 square copy). A cluster whose nearest neighbour is
at >= the threshold is retired (reducibility: it never merges below the threshold again), so the
scans and updates shrink as the clusters settle. Ties: the chain's predecessor, then the
smallest index, as linkage_chain.py, so both chains give the same partition.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from insid3.kernels._chain_common import find_root, gram_row_distances


@njit(cache=True, nogil=True)
def condensed_gram_distances(upper, out):
    """scipy's condensed float64 distances (pairs i < j, row by row) into `out`, from the upper
    triangle of the Gram matrix (1 - clip, float32, as `_chain_common.gram_distance`)."""
    n = upper.shape[0]
    row = np.empty(n, dtype=np.float32)
    position = 0
    for i in range(n - 1):
        gram_row_distances(upper, i, row)
        for j in range(n - i - 1):
            out[position + j] = np.float64(row[j])
        position += n - i - 1


@njit(cache=True, nogil=True)
def _remove(active, n_active, value):
    """Drop `value` from the ascending active[:n_active]; returns the new count."""
    k = np.searchsorted(active[:n_active], value)
    active[k : n_active - 1] = active[k + 1 : n_active].copy()
    return n_active - 1


@njit(cache=True, nogil=True)
def dense_chain_below(d, n, threshold):
    """Every merge of average linkage below `threshold` on condensed float64 distances `d`
    (overwritten). Returns root: root[i] = the smallest patch index of i's cluster."""
    size = np.ones(n, dtype=np.int64)
    parent = np.arange(n)
    active = np.arange(n)
    n_active = n
    row_start = np.empty(n, dtype=np.int64)  # d[row_start[i] + j] = d(i, j) for i < j
    for i in range(n):
        row_start[i] = i * (2 * n - i - 1) // 2 - i - 1
    chain = np.empty(n, dtype=np.int64)
    top = 0
    while n_active > 1:
        if top == 0:
            chain[0] = active[0]
            top = 1
        a = chain[top - 1]
        previous = chain[top - 2] if top >= 2 else -1
        b = previous
        best = np.inf
        if previous >= 0:
            best = d[row_start[min(a, previous)] + max(a, previous)]
        for k in range(n_active):
            y = active[k]
            if y == a:
                continue
            v = d[row_start[y] + a] if y < a else d[row_start[a] + y]
            if v < best:
                best = v
                b = y
        if not best < threshold:  # nothing within the threshold now or later: retire a
            n_active = _remove(active, n_active, a)
            top -= 1
            continue
        if b != previous:
            chain[top] = b
            top += 1
            continue
        top -= 2  # reciprocal nearest neighbours: merge into the smaller slot
        low, high = min(a, b), max(a, b)
        n_low, n_high = np.float64(size[low]), np.float64(size[high])
        total = n_low + n_high
        for k in range(n_active):
            y = active[k]
            if y == low or y == high:
                continue
            at_low = row_start[y] + low if y < low else row_start[low] + y
            at_high = row_start[y] + high if y < high else row_start[high] + y
            d[at_low] = (n_low * d[at_low] + n_high * d[at_high]) / total
        size[low] += size[high]
        parent[high] = low
        n_active = _remove(active, n_active, high)
    for i in range(n):
        parent[i] = find_root(parent, i)
    return parent
