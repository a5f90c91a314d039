"""Doc §8: cluster statistics, seed selection and merging as segment reductions (no loop over
clusters).

Only clusters that hold a candidate patch ("matched", hits > 0) need prototypes: the seed is one
of them, and every other cluster has area weight 0, so its score cross * intra * 0 is 0
whatever its prototype (it joins the mask only if merge_threshold < 0, as in the reference).
Their per-cluster sums are one one-hot GEMM over the matched clusters' patches (<= 64 matched
clusters, the usual case) or a sort + float64 cumulative sum (any number), never a loop.
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


# Up to this many segments, per-segment sums are one (M x L) one-hot GEMM (float32, exact
# counts); beyond, a stable sort + float64 cumulative sum keeps the cost O(L * C) for any M.
ONE_HOT_MAX_SEGMENTS = 64


def segment_means(values: Array, segments: Array, n_segments: int) -> Array:
    """Mean of the rows of `values` (L, C) per segment id in [0, n_segments): (n_segments, C)
    float32; empty segments give zeros. Portable NumPy/CuPy (no ufunc.at / reduceat)."""
    xp = array_module(values, segments)
    counts = xp.bincount(segments, minlength=n_segments)
    if n_segments <= ONE_HOT_MAX_SEGMENTS:
        one_hot = (segments[None, :] == xp.arange(n_segments)[:, None]).astype(xp.float32)
        sums = one_hot @ values.astype(xp.float32, copy=False)
    else:
        order = xp.argsort(segments, kind="stable")
        running = xp.cumsum(values[order].astype(xp.float64), axis=0)
        running = xp.concatenate([xp.zeros((1, values.shape[1]), dtype=xp.float64), running], axis=0)
        bounds = xp.concatenate([xp.zeros(1, dtype=counts.dtype), xp.cumsum(counts)])
        sums = running[bounds[1:]] - running[bounds[:-1]]
    return (sums / xp.maximum(counts, 1)[:, None]).astype(xp.float32)


def _normalize_rows(x: Array) -> Array:
    xp = array_module(x)
    norm = xp.sqrt(xp.einsum("mc,mc->m", x, x))[:, None]
    return x / xp.maximum(norm, xp.float32(NORMALIZE_EPS))


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
    hits = xp.bincount(labels, weights=candidate.astype(xp.float64), minlength=k).astype(xp.int64)
    cross = xp.bincount(labels, weights=sim_fwd.astype(xp.float64), minlength=k)
    cross = (cross / xp.maximum(areas, 1)).astype(xp.float32)
    matched = xp.nonzero(hits > 0)[0]
    slot = xp.full(k, -1, dtype=xp.int64)
    slot[matched] = xp.arange(matched.shape[0])
    members = xp.nonzero(slot[labels] >= 0)[0]  # patches of matched clusters
    segments = slot[labels[members]]
    n_matched = int(matched.shape[0])
    return ClusterStatistics(
        areas=areas.astype(xp.int64),
        hits=hits,
        mean_forward_similarity=cross,
        matched=matched.astype(xp.int64),
        debiased_prototypes=_normalize_rows(segment_means(debiased[members], segments, n_matched)),
        original_prototypes=_normalize_rows(segment_means(features[members], segments, n_matched)),
    )


def _seed_slot(stats: ClusterStatistics, prototype: Array) -> Array:
    """Position in stats.matched of the seed: the largest <p, q~_k> (first on ties, as argmax)."""
    xp = array_module(prototype)
    return xp.argmax(stats.debiased_prototypes @ prototype)


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
    intra = stats.original_prototypes @ stats.original_prototypes[seed]
    matched = stats.matched
    # float32 division of exact integer counts, as the reference's per_cluster / all_areas
    area_weight = stats.hits[matched].astype(xp.float32) / stats.areas[matched].astype(xp.float32)
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
