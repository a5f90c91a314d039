"""Doc §8's per-cluster quantities as segment reductions (no loop over clusters), for
`insid3.kernels.pruned.pruned_aggregate`.

Every per-cluster quantity is a function of that cluster's own patches only, in float32
arithmetic that does not depend on which other clusters are computed alongside it: sums by a
grouped tree over the cluster's rows (`segment_sums`), row-wise normalisation and row-wise dot
products (no GEMM/GEMV, whose blocking, and so rounding, depends on the other rows). So the
prototype, <p, q~_k>, intra_k and score_k of a cluster are bit for bit the same whether they are
computed for every cluster or for any subset holding it: pruned_aggregate computes them only for
the clusters its decisions need, and still equals doc §8 evaluated on every cluster.
"""

from __future__ import annotations

import numpy as np

from insid3.kernels.arrays import NORMALIZE_EPS, Array, array_module

# Rows summed per group and level of `segment_sums`: a segment of n rows takes
# ceil(log_GROUP(n)) levels, and pads at most GROUP - 1 zero rows per level.
GROUP = 8


def segment_sums(values: Array, rows: Array, counts: Array, max_count: int) -> Array:
    """Per-segment sums of rows of `values` (L', C): segment j is values[rows[s_j : s_j + counts[j]]]
    with s_j = counts[:j].sum() (`rows` lists the segments one after the other). (M, C) float32;
    empty segments give zeros. max_count: counts.max() (a host int, to size the levels).

    Each segment is summed on its own: its rows, in the order given, in groups of GROUP added
    one after the other (the last group zero-padded: x + 0 = x exactly), then its group sums
    the same way, until one row is left. The result of a segment depends only on its own rows,
    not on which or how many other segments are summed in the same call.
    Host syncs: three sizes per level.
    """
    xp = array_module(values, rows, counts)
    n_segments, channels = int(counts.shape[0]), int(values.shape[1])
    out = xp.zeros((n_segments, channels), dtype=xp.float32)
    ids = xp.arange(n_segments)  # the segments still summing
    counts = counts.astype(xp.int64, copy=False)
    starts = xp.cumsum(counts) - counts
    level, source = values, rows  # segment ids[i]'s rows: level[source[starts[i] : starts[i] + counts[i]]]
    while True:
        single = xp.nonzero(counts == 1)[0]
        if single.shape[0]:  # one row left: that row is the sum
            picked = starts[single] if source is None else source[starts[single]]
            out[ids[single]] = level[picked]
        if max_count <= 1:
            return out
        several = xp.nonzero(counts > 1)[0]
        if several.shape[0] == 0:
            return out
        ids, counts, starts = ids[several], counts[several], starts[several]
        groups = (counts + GROUP - 1) // GROUP
        group_end = xp.cumsum(groups)
        n_groups = int(group_end[-1])
        slot = xp.arange(n_groups * GROUP, dtype=xp.int64)
        group = slot // GROUP
        segment = xp.searchsorted(group_end, group, side="right")
        position = (group - (group_end - groups)[segment]) * GROUP + slot % GROUP  # within its segment
        valid = position < counts[segment]
        picked = xp.where(valid, starts[segment] + position, 0)
        gathered = level[picked if source is None else source[picked]]
        gathered[xp.nonzero(~valid)[0]] = 0
        gathered = gathered.reshape(n_groups, GROUP, channels)
        level = gathered[:, 0].copy()
        for j in range(1, GROUP):  # one after the other: the same order for every segment
            level += gathered[:, j]
        source, counts, starts = None, groups, group_end - groups
        max_count = (max_count + GROUP - 1) // GROUP


def segment_means(values: Array, segments: Array, n_segments: int) -> Array:
    """Mean of the rows of `values` (L, C) per segment id in [0, n_segments): (n_segments, C)
    float32; rows with a negative id are left out, empty segments give zeros. Each mean depends
    only on its own segment's rows, summed in row order (`segment_sums`). Portable NumPy/CuPy
    (no ufunc.at / reduceat)."""
    xp = array_module(values, segments)
    members = xp.nonzero(segments >= 0)[0]
    member_segments = segments[members]
    rows = members[xp.argsort(member_segments, kind="stable")]  # by segment, in row order inside
    counts = xp.bincount(member_segments, minlength=n_segments)
    max_count = int(counts.max()) if n_segments else 0
    sums = segment_sums(values.astype(xp.float32, copy=False), rows, counts, max_count)
    return (sums / xp.maximum(counts, 1)[:, None]).astype(xp.float32)


def normalize_rows(x: Array) -> Array:
    """Row-wise x / max(||x||, eps), each row on its own (row-wise sum, not a GEMV)."""
    xp = array_module(x)
    norm = xp.sqrt((x * x).sum(axis=1))[:, None]
    return x / xp.maximum(norm, xp.float32(NORMALIZE_EPS))


def row_dots(rows: Array, vector: Array) -> Array:
    """<rows[m], vector> for every row, each on its own (row-wise sum, not a GEMV): float32 (M,)."""
    return (rows * vector[None, :]).sum(axis=1)


def intra_bound(channels: int) -> np.float32:
    """A float32 B >= |intra_k| for intra_k = <q_seed, q_k> computed as `row_dots` of two rows of
    `normalize_rows` (C = channels): with u = 2^-24 and g = C u / (1 - C u), a float32 dot product
    is within (1 + g) of the sum of |products|, and a float32-normalised row has norm at most
    (1 + u) / ((1 - u) sqrt(1 - g)), so |intra| <= (1 + g)(1 + u)^3 / ((1 - g)(1 - u)^2)
    <= 1 + 2g + 6u < 1 + (4 C + 8) u (while C u < 1/8)."""
    return np.float32(1.0 + (4 * int(channels) + 8) * 2.0**-24)


def cluster_prototypes(values: Array, labels: Array, clusters: Array, n_clusters: int) -> Array:
    """normalise(mean of values over cluster c) for c in `clusters` ((M,) distinct ids): (M, C)
    float32. Each row depends only on its cluster's patches (`segment_sums`)."""
    xp = array_module(values, labels, clusters)
    slot = xp.full(n_clusters, -1, dtype=xp.int64)  # -1: a cluster not asked for
    slot[clusters] = xp.arange(clusters.shape[0])
    return normalize_rows(segment_means(values, slot[labels], int(clusters.shape[0])))


def mean_forward_similarity(labels: Array, sim_fwd: Array, areas: Array) -> Array:
    """cross_k = mean of sim_fwd over cluster k, (K,) float32 (float64 sums per cluster, in patch
    order: the same additions, in the same order, on NumPy and CuPy).

    NumPy's bincount adds the weights one patch after the other. CuPy's adds them with atomics, in
    no fixed order, so on CuPy the sums are `ordered_sums` (kernels/cuda.py): one thread per
    cluster adding its patches in patch order, hence the same float64 bits as NumPy's."""
    xp = array_module(labels, sim_fwd, areas)
    weights, n_clusters = sim_fwd.astype(xp.float64), int(areas.shape[0])
    if xp is np:
        sums = np.bincount(labels, weights=weights, minlength=n_clusters)
    else:
        from insid3.kernels.cuda import ordered_sums

        order = xp.argsort(labels, kind="stable")  # by cluster, in patch order inside
        counts = xp.bincount(labels, minlength=n_clusters)
        sums = ordered_sums(weights[order], xp.cumsum(counts) - counts, counts)
    return (sums / xp.maximum(areas, 1)).astype(xp.float32)


def area_weights(hits: Array, areas: Array) -> Array:
    """a_k = hits_k / area_k: float32 division of exact integer counts, as the reference's
    per_cluster / all_areas. Nondecreasing in hits (float rounding is monotone)."""
    xp = array_module(hits, areas)
    return hits.astype(xp.float32) / areas.astype(xp.float32)
