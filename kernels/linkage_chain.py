"""Average linkage by a nearest-neighbour chain over the "< threshold" graph (the fast exact CPU
path; NumPy + Numba).

Three facts about average linkage cut at distance t make most of the N x N work unnecessary:

1. Reducibility: d(A+B, K) >= min(d(A, K), d(B, K)). So a cluster's distance to the nearest
   other cluster never drops when others merge, and (a) a cluster whose nearest neighbour is at
   >= t never merges below t again (it is retired), (b) if d(A+B, K) < t then K was within t of
   A or of B. By induction, every cluster closer than t to X is reached from X through an edge
   of the graph "d(i, j) < t" between single patches ("neighbours" below). The nearest-neighbour
   chain only has to look at those, not at all active clusters.
2. The average distance between two clusters is W(A, K) / (|A| |K|) with W the sum of the
   pairwise patch distances, and W(A+B, K) = W(A, K) + W(B, K). We keep W only for neighbouring
   clusters; when a merge makes K a neighbour of A+B through B only, W(A, K) is summed once from
   the patch distances (each patch pair is summed at most once over the whole run: afterwards
   the pair's contribution lives in a kept W).
3. The nearest-neighbour chain (Murtagh) yields the same merges as the sequential algorithm for
   any reducible linkage, so the merges below t, and hence the partition, are sklearn's.

Numerics: patch distances are float32 1 - clip(g, -1, 1) computed from the Gram matrix exactly as
`cosine_distances` does, widened to float64; sums and averages are float64 as scipy's (used by
sklearn), so heights agree to ~1e-16 relative. Ties: the chain prefers its predecessor (required
for termination), then the smallest cluster index; sklearn may break exact ties otherwise.

Memory at N = 4096 (one ViT-L 1024 px image): the float32 Gram matrix (64 MiB, upper triangle
read only, no mirror and no distance matrix), int32 edge lists (2 x 4 bytes per edge: 3.6 MiB for
the benchmark scene's 0.23 M edges) and the float64 condensed W (64 MiB), of which only the
entries of neighbouring clusters are ever written; it is kept per thread between calls
(`sums_buffer`). Lists are capped at 5% of the pairs (DENSE_EDGE_FRACTION): a denser graph goes
to linkage_dense_chain.py, which uses the same buffer as its condensed distance matrix.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from insid3.kernels._chain_common import find_root, gram_distance, gram_row_distances, sums_buffer
from insid3.kernels.linkage_dense_chain import condensed_gram_distances, dense_chain_below
from insid3.kernels.linkage_reciprocal import float32_limit


@njit(cache=True, nogil=True, inline="always")
def _pair(i, j, n):
    """Position of the unordered pair {i, j} in scipy's condensed order."""
    if i > j:
        i, j = j, i
    return i * (2 * n - i - 1) // 2 + j - i - 1


@njit(cache=True, nogil=True)
def threshold_edges(upper, limit, max_edges):
    """Pairs i < j with d(i, j) < limit: (first, second, complete), two int32 arrays in row-major
    order. limit is float32 (linkage_reciprocal.float32_limit(t)), so the test equals sklearn's
    float64 d < t. Stops early with complete=False (and no pairs) once there are more than
    max_edges: a graph that dense goes to the dense chain instead.

    One pass over the upper triangle; each row's distances go to a small buffer and are counted
    there (branch-free loops that LLVM vectorises), and the output grows between rows only: a
    capacity check inside the inner loop measured 12x slower."""
    n = upper.shape[0]
    row = np.empty(n, dtype=np.float32)
    first = np.empty(16 * n, dtype=np.int32)
    second = np.empty(16 * n, dtype=np.int32)
    e = 0
    for i in range(n - 1):
        gram_row_distances(upper, i, row)
        count = 0
        for j in range(n - i - 1):
            count += row[j] < limit
        if count == 0:
            continue
        if e + count > max_edges:
            return first[:0].copy(), second[:0].copy(), False
        if e + count > first.shape[0]:
            capacity = max(2 * first.shape[0], e + count)
            grown = np.empty(capacity, dtype=np.int32)
            grown[:e] = first[:e]
            first = grown
            grown = np.empty(capacity, dtype=np.int32)
            grown[:e] = second[:e]
            second = grown
        for j in range(n - i - 1):
            if row[j] < limit:
                first[e] = i
                second[e] = i + 1 + j
                e += 1
    return first[:e].copy(), second[:e].copy(), True


@njit(cache=True, nogil=True)
def _block_sum(upper, next_member, a, k):
    """W(a, k): the sum of patch distances between the members of clusters a and k."""
    total = 0.0
    x = a
    while x != -1:
        y = k
        while y != -1:
            total += gram_distance(upper, x, y)
            y = next_member[y]
        x = next_member[x]
    return total


@njit(cache=True, nogil=True)
def _neighbour_lists(n, first, second):
    """Symmetric adjacency lists in one int32 pool: list of i = pool[offset[i]:offset[i] + length[i]]."""
    length = np.zeros(n, dtype=np.int64)
    for e in range(first.shape[0]):
        length[first[e]] += 1
        length[second[e]] += 1
    offset = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        offset[i] = offset[i - 1] + length[i - 1]
    pool = np.empty(2 * first.shape[0] + n, dtype=np.int32)  # + n: room for the first merges
    fill = offset.copy()
    for e in range(first.shape[0]):
        i, j = first[e], second[e]
        pool[fill[i]] = j
        fill[i] += 1
        pool[fill[j]] = i
        fill[j] += 1
    return pool, offset, length


@njit(cache=True, nogil=True)
def _compact(pool, offset, length, alive, extra):
    """A new pool holding only the lists of live clusters, with room for `extra` more entries."""
    live = 0
    for i in range(offset.shape[0]):
        if alive[i]:
            live += length[i]
    out = np.empty(max(2 * live, live + extra) + 1, dtype=np.int32)
    used = 0
    for i in range(offset.shape[0]):
        if alive[i]:
            out[used : used + length[i]] = pool[offset[i] : offset[i] + length[i]]
            offset[i] = used
            used += length[i]
    return out, used


@njit(cache=True, nogil=True)
def chain_below(upper, threshold, first, second, sums):
    """Every merge of average linkage below `threshold`; returns (root, merges, pairs_summed).

    upper: (N, N) float32 whose upper triangle holds the Gram matrix;
    first, second: the pairs of threshold_edges(upper, float32_limit(threshold), ...);
    sums: float64 scratch of N (N - 1) / 2 entries (condensed W; only neighbouring pairs are written).
    root[i] = the smallest patch index of i's cluster (a merged cluster keeps the smaller slot).
    """
    n = upper.shape[0]
    size = np.ones(n, dtype=np.int64)
    parent = np.arange(n)
    alive = np.ones(n, dtype=np.bool_)
    next_member = np.full(n, -1, dtype=np.int64)  # members of a cluster: a linked list from its slot
    last_member = np.arange(n)
    pool, offset, length = _neighbour_lists(n, first, second)
    used = pool.shape[0] - n
    for e in range(first.shape[0]):
        i, j = first[e], second[e]
        sums[_pair(i, j, n)] = gram_distance(upper, i, j)
    # stamps instead of cleared flags: "k is a neighbour of A / of B / already listed" this merge
    near_a = np.full(n, -1, dtype=np.int64)
    near_b = np.full(n, -1, dtype=np.int64)
    listed = np.full(n, -1, dtype=np.int64)
    union = np.empty(n, dtype=np.int32)
    chain = np.empty(n, dtype=np.int64)
    top = 0
    start = 0  # every slot below start is dead (absorbed or retired)
    merges = 0
    pairs_summed = 0
    while True:
        if top == 0:
            while start < n and not alive[start]:
                start += 1
            if start == n:
                break
            chain[0] = start
            top = 1
        a = chain[top - 1]
        previous = chain[top - 2] if top >= 2 else -1
        b = previous
        best = np.inf
        if previous >= 0:
            best = sums[_pair(a, previous, n)] / (np.float64(size[a]) * np.float64(size[previous]))
        for q in range(offset[a], offset[a] + length[a]):
            k = find_root(parent, pool[q])
            if k == a or not alive[k]:
                continue
            d = sums[_pair(a, k, n)] / (np.float64(size[a]) * np.float64(size[k]))
            if d < best or (d == best and b != previous and k < b):
                best = d
                b = k
        if not best < threshold:  # nothing within t now or later (reducibility): retire a
            alive[a] = False
            top -= 1
            continue
        if b != previous:
            chain[top] = b
            top += 1
            continue
        # a and b are reciprocal nearest neighbours: merge them into the smaller slot
        top -= 2
        low, high = min(a, b), max(a, b)
        count = 0
        for side in range(2):
            x = a if side == 0 else b
            stamp = near_a if side == 0 else near_b
            for q in range(offset[x], offset[x] + length[x]):
                k = find_root(parent, pool[q])
                if k == a or k == b or not alive[k]:
                    continue
                stamp[k] = merges
                if listed[k] != merges:
                    listed[k] = merges
                    union[count] = k
                    count += 1
        if used + count > pool.shape[0]:
            pool, used = _compact(pool, offset, length, alive, count)
        for c in range(count):
            k = union[c]
            if near_a[k] == merges:
                w_a = sums[_pair(a, k, n)]
            else:
                w_a = _block_sum(upper, next_member, a, k)
                pairs_summed += size[a] * size[k]
            if near_b[k] == merges:
                w_b = sums[_pair(b, k, n)]
            else:
                w_b = _block_sum(upper, next_member, b, k)
                pairs_summed += size[b] * size[k]
            sums[_pair(low, k, n)] = w_a + w_b
            pool[used + c] = k
        offset[low] = used
        length[low] = count
        used += count
        size[low] += size[high]
        parent[high] = low
        alive[high] = False
        next_member[last_member[low]] = high
        last_member[low] = last_member[high]
        merges += 1
    for i in range(n):
        parent[i] = find_root(parent, i)
    return parent, merges, pairs_summed


# Above this fraction of pairs closer than the threshold, the dense chain is faster (measured at
# N = 2304 and 4096: equal near 5%; at 81%, as random-init ViT features give, 49 ms against 269).
DENSE_EDGE_FRACTION = 0.05


def chain_linkage(upper: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Average-linkage clusters cut at distance < threshold from the upper triangle of the (N, N)
    float32 Gram matrix F F^T (distances 1 - clip(g, -1, 1)). Returns (root, edges): root[i] =
    smallest patch index of i's cluster; edges = pairs closer than the threshold, or -1 when
    there were too many to list and the dense chain (linkage_dense_chain.py) ran instead."""
    upper = np.ascontiguousarray(upper, dtype=np.float32)
    n = upper.shape[0]
    pairs = n * (n - 1) // 2
    sums = sums_buffer(pairs)
    limit = float32_limit(threshold)
    first, second, complete = threshold_edges(upper, limit, int(DENSE_EDGE_FRACTION * pairs))
    if not complete:
        condensed_gram_distances(upper, sums)
        return dense_chain_below(sums, n, float(threshold)), -1
    root, _, _ = chain_below(upper, float(threshold), first, second, sums)
    return root, int(first.shape[0])
