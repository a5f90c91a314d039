"""Doc §8: cluster statistics, seed selection and merging as segment reductions (no loop over
clusters).

Only clusters that hold a candidate patch ("matched", hits > 0) need prototypes: the seed is one
of them, and every other cluster has area weight 0, so its score cross * intra * 0 is 0
whatever its prototype (it joins the mask only if merge_threshold < 0, as in the reference).

Every per-cluster quantity is a function of that cluster's own patches only, in float32
arithmetic that does not depend on which other clusters are computed alongside it: sums by a
grouped tree over the cluster's rows (`segment_sums`), row-wise normalisation and row-wise dot
products (no GEMM/GEMV, whose blocking, and so rounding, depends on the other rows). So the
prototype, <p, q~_k>, intra_k and score_k of a cluster are bit for bit the same whether they are
computed for the matched clusters (`aggregate`) or for any other set holding that cluster
(`insid3.kernels.pruned.pruned_aggregate`, which must reproduce `aggregate` exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

from insid3.kernels.arrays import NORMALIZE_EPS, Array, KernelInputError, array_module, require


@dataclass(frozen=True, eq=False)
class ClusterStatistics:
    """Per-cluster quantities of doc §8 (K clusters, M matched clusters, C channels).

    areas: (K,) int64 patches per cluster.
    hits: (K,) int64 candidate patches per cluster.
    mean_forward_similarity: (K,) float32, cross_k = mean of sim_fwd over the cluster.
    matched: (M,) int64 ids of the clusters with hits > 0, ascending.
    debiased_prototypes: (M, D) float32 (the debiased features' coordinates), q~_k = normalise(mean of F~t over cluster matched[m]).
    original_prototypes: (M, C) float32, q_k = normalise(mean of F over cluster matched[m]).
    """

    areas: Array
    hits: Array
    mean_forward_similarity: Array
    matched: Array
    debiased_prototypes: Array
    original_prototypes: Array

    @property
    def n_clusters(self) -> int:
        return int(self.areas.shape[0])


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


def cluster_prototypes(values: Array, labels: Array, clusters: Array, n_clusters: int) -> Array:
    """normalise(mean of values over cluster c) for c in `clusters` ((M,) distinct ids): (M, C)
    float32. Each row depends only on its cluster's patches (`segment_sums`)."""
    xp = array_module(values, labels, clusters)
    slot = xp.full(n_clusters, -1, dtype=xp.int64)  # -1: a cluster not asked for
    slot[clusters] = xp.arange(clusters.shape[0])
    return normalize_rows(segment_means(values, slot[labels], int(clusters.shape[0])))


def mean_forward_similarity(labels: Array, sim_fwd: Array, areas: Array) -> Array:
    """cross_k = mean of sim_fwd over cluster k, (K,) float32 (float64 sums per cluster, in patch
    order)."""
    xp = array_module(labels, sim_fwd, areas)
    sums = xp.bincount(labels, weights=sim_fwd.astype(xp.float64), minlength=int(areas.shape[0]))
    return (sums / xp.maximum(areas, 1)).astype(xp.float32)


def area_weights(hits: Array, areas: Array) -> Array:
    """a_k = hits_k / area_k: float32 division of exact integer counts, as the reference's
    per_cluster / all_areas. Nondecreasing in hits (float rounding is monotone)."""
    xp = array_module(hits, areas)
    return hits.astype(xp.float32) / areas.astype(xp.float32)


def cluster_statistics(
    labels: Array, candidate: Array, features: Array, debiased: Array, sim_fwd: Array
) -> ClusterStatistics:
    """Doc §8 statistics for labels (N,) int in [0, K) (K = labels.max() + 1), candidate (N,)
    bool, features (N, C) and debiased (N, D) float32 (original target features, and debiased
    ones in any orthonormal coordinates: C, or D of a DebiasFrame) and
    sim_fwd (N,) float32. Host syncs: K and M (array sizes)."""
    fn = "cluster_statistics"
    require(fn, "labels", labels, ndim=1, dtype="integer")
    n = labels.shape[0]
    require(fn, "candidate", candidate, shape=(n,), dtype="bool")
    require(fn, "features", features, shape=(n, None), dtype="float32")
    # debiased may be in DebiasFrame coordinates (D wide), so only its rows must match
    require(fn, "debiased", debiased, shape=(n, None), dtype="float32")
    require(fn, "sim_fwd", sim_fwd, shape=(n,), dtype="float32")
    xp = array_module(labels, candidate, features, debiased, sim_fwd)
    if n == 0:
        raise KernelInputError(f"{fn}: labels is empty")
    if int(labels.min()) < 0:
        raise KernelInputError(f"{fn}: labels must be >= 0, got a minimum of {int(labels.min())}")
    labels = labels.astype(xp.int64, copy=False)
    k = int(labels.max()) + 1
    areas = xp.bincount(labels, minlength=k)
    hits = xp.bincount(labels[xp.nonzero(candidate)[0]], minlength=k).astype(xp.int64)
    matched = xp.nonzero(hits > 0)[0].astype(xp.int64)
    return ClusterStatistics(
        areas=areas.astype(xp.int64),
        hits=hits,
        mean_forward_similarity=mean_forward_similarity(labels, sim_fwd, areas),
        matched=matched,
        debiased_prototypes=cluster_prototypes(debiased, labels, matched, k),
        original_prototypes=cluster_prototypes(features, labels, matched, k),
    )


def _seed_slot(stats: ClusterStatistics, prototype: Array) -> Array:
    """Position in stats.matched of the seed: the largest <p, q~_k> (first on ties, as argmax)."""
    xp = array_module(prototype)
    return xp.argmax(row_dots(stats.debiased_prototypes, prototype))


def seed_cluster(stats: ClusterStatistics, prototype: Array) -> int | None:
    """Id of the seed cluster (among clusters with hits > 0, the largest <p, q~_k>); None when no
    cluster holds a candidate patch."""
    require("seed_cluster", "prototype", prototype, ndim=1, dtype="float32")
    if stats.matched.shape[0] == 0:
        return None
    return int(stats.matched[_seed_slot(stats, prototype)])


def merge_clusters(labels: Array, stats: ClusterStatistics, prototype: Array, merge_threshold: float) -> Array:
    """Patch mask (N,) bool: patch i is foreground when its cluster's score
    cross_k * intra_k * a_k > merge_threshold, with intra_k = <q_seed, q_k>, a_k = hits/area and
    a_seed = 1. No matched cluster (empty candidate) gives the empty mask."""
    require("merge_clusters", "labels", labels, ndim=1, dtype="integer")
    require("merge_clusters", "prototype", prototype, ndim=1, dtype="float32")
    xp = array_module(labels, prototype)
    if stats.matched.shape[0] == 0:
        return xp.zeros(labels.shape[0], dtype=bool)
    seed = _seed_slot(stats, prototype)
    intra = row_dots(stats.original_prototypes, stats.original_prototypes[seed])
    matched = stats.matched
    area_weight = area_weights(stats.hits[matched], stats.areas[matched])
    area_weight[seed] = 1
    # As the reference: (cross * intra) * area weight, float32; unmatched clusters score 0.
    score = xp.zeros(stats.n_clusters, dtype=xp.float32)
    score[matched] = stats.mean_forward_similarity[matched] * intra * area_weight
    return score[labels] > xp.float32(merge_threshold)


def aggregate(
    labels: Array,
    candidate: Array,
    features: Array,
    debiased: Array,
    sim_fwd: Array,
    prototype: Array,
    merge_threshold: float,
) -> Array:
    """Doc §8 end to end: cluster_statistics then merge_clusters. Returns the (N,) bool patch mask."""
    stats = cluster_statistics(labels, candidate, features, debiased, sim_fwd)
    return merge_clusters(labels, stats, prototype, merge_threshold)
