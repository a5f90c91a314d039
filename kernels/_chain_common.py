"""What the two nearest-neighbour chains (linkage_chain.py, linkage_dense_chain.py) share: the
patch distance read from a Gram matrix's upper triangle, the union-find root, and the per-thread
float64 scratch buffer. Private to the linkage modules; imports neither of them.

Patch distances are float32 1 - clip(g, -1, 1), as `linkage.cosine_distances` computes them
(and as the reference hands them to sklearn), so the chains see the reference's distances bit
for bit without a distance matrix ever being built.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def gram_distance(upper, i, j):
    """d(i, j) = 1 - clip(g_ij, -1, 1) (float32, then widened to float64) from the upper
    triangle of the Gram matrix `upper`; either order of i and j."""
    if i > j:
        i, j = j, i
    value = upper[i, j]
    if value > np.float32(1.0):
        value = np.float32(1.0)
    if value < np.float32(-1.0):
        value = np.float32(-1.0)
    return np.float64(np.float32(1.0) - value)


@njit(cache=True, nogil=True, inline="always")
def gram_row_distances(upper, i, out):
    """out[j - i - 1] = d(i, j) for j > i, float32 as `gram_distance` (one tight loop per row,
    branch-free so that LLVM vectorises it)."""
    row = upper[i]
    n = row.shape[0]
    for j in range(i + 1, n):
        out[j - i - 1] = np.float32(1.0) - min(max(row[j], np.float32(-1.0)), np.float32(1.0))


@njit(cache=True, nogil=True, inline="always")
def find_root(parent, x):
    """Union-find root of x, halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


_scratch = threading.local()


def sums_buffer(pairs: int) -> np.ndarray:
    """A float64 buffer of `pairs` entries for the chains' sums or distances, kept per thread.

    Both chains write every entry before reading it, so stale values are harmless; a fresh
    buffer would cost its page faults on every image instead (~10 ms of ~40 at N = 4096). Held:
    8 bytes per patch pair of the largest image clustered by the thread (64 MiB at N = 4096).
    """
    buffer = getattr(_scratch, "sums", None)
    if buffer is None or buffer.shape[0] < pairs:
        buffer = _scratch.sums = np.empty(pairs, dtype=np.float64)
    return buffer[:pairs]
