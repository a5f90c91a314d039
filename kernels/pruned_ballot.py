"""What `pruned_aggregate` (kernels/pruned.py) and `exact_cluster_scores` (kernels/pruned_scores.py)
share: their inputs' checks, what doc §8 knows of each of the target's clusters before any
backward vote (areas, cross_k, forward patches), and the ballot of the backward votes cast so far.

A row's backward vote does not depend on which rows are voted with it (matching.backward_votes),
so votes may be cast in any grouping and still give doc §6's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from insid3.kernels.aggregation import mean_forward_similarity
from insid3.kernels.arrays import Array, KernelInputError, array_module, require
from insid3.kernels.matching import ReferenceSide, backward_candidates, backward_votes


@dataclass(frozen=True, eq=False)
class Clusters:
    """What doc §8 knows of the target's K clusters before any backward vote."""

    labels: Array  # (N,) int64 cluster ids in [0, K)
    count: int  # K
    areas: Array  # (K,) patches per cluster
    cross: Array  # (K,) float32 mean forward similarity, cross_k
    forward_rows: Array  # the forward patches, ascending
    forward_counts: Array  # (K,) forward patches per cluster: hits_k <= forward_counts_k
    reachable: Array  # clusters with a forward patch, ascending: the only ones a seed can be


def _votes(debiased: Array, rows: Array, reference: ReferenceSide) -> Array:
    """Candidate flags (forward already known) of `rows`: backward majority vote."""
    votes = backward_votes(debiased[rows], reference.debiased, reference.patch_masks)
    return backward_candidates(votes, int(reference.debiased.shape[0]))


class Ballot:
    """The backward votes cast so far, the one thing that changes during a call: which patches
    were voted, which of those are candidates, and how many were voted."""

    def __init__(self, debiased: Array, reference: ReferenceSide) -> None:
        xp = array_module(debiased)
        self._debiased, self._reference = debiased, reference
        self.is_voted = xp.zeros(debiased.shape[0], dtype=bool)
        self.is_hit = xp.zeros(debiased.shape[0], dtype=bool)
        self.count = 0

    def cast(self, rows: Array) -> None:
        """Vote `rows` (none of them voted before)."""
        if rows.shape[0]:
            self.is_voted[rows] = True
            self.is_hit[rows] = _votes(self._debiased, rows, self._reference)
            self.count += int(rows.shape[0])

    def unvoted(self, rows: Array) -> Array:
        xp = array_module(rows)
        return rows[xp.nonzero(~self.is_voted[rows])[0]]

    def hit_bounds(self, clusters: Clusters) -> tuple[Array, Array]:
        """(lo, hi) per cluster: hits among the voted patches, plus the forward ones not voted yet."""
        xp = array_module(self.is_hit)
        labels, k = clusters.labels, clusters.count
        low = xp.bincount(labels[xp.nonzero(self.is_hit)[0]], minlength=k)
        return low, low + clusters.forward_counts - xp.bincount(labels[xp.nonzero(self.is_voted)[0]], minlength=k)


def validated(
    labels: Array, forward: Array, features: Array, debiased: Array, sim_fwd: Array, reference: ReferenceSide
) -> ModuleType:
    """The array module of the inputs, after checking every shape and dtype against `labels`
    (errors name pruned_aggregate, whose arguments these are)."""
    fn = "pruned_aggregate"
    require(fn, "labels", labels, ndim=1, dtype="integer")
    n = labels.shape[0]
    require(fn, "forward", forward, shape=(n,), dtype="bool")
    require(fn, "features", features, shape=(n, None), dtype="float32")
    require(fn, "debiased", debiased, shape=(n, None), dtype="float32")
    width = debiased.shape[1]
    require(fn, "sim_fwd", sim_fwd, shape=(n,), dtype="float32")
    require(fn, "reference.prototype", reference.prototype, shape=(width,), dtype="float32")
    require(fn, "reference.debiased", reference.debiased, shape=(None, None, width), dtype="float32")
    shots, ref_patches, _ = reference.debiased.shape
    require(fn, "reference.patch_masks", reference.patch_masks, shape=(shots, ref_patches), dtype="bool")
    reference_arrays = (reference.debiased, reference.patch_masks, reference.prototype)
    xp = array_module(labels, forward, features, debiased, sim_fwd, *reference_arrays)
    if n == 0:
        raise KernelInputError(f"{fn}: labels is empty")
    if int(labels.min()) < 0:
        raise KernelInputError(f"{fn}: labels must be >= 0, got a minimum of {int(labels.min())}")
    return xp


def count_clusters(labels: Array, forward: Array, sim_fwd: Array) -> Clusters:
    """Areas, cross_k and forward patches per cluster: everything known before any vote."""
    xp = array_module(labels, forward, sim_fwd)
    labels = labels.astype(xp.int64, copy=False)
    k = int(labels.max()) + 1
    areas = xp.bincount(labels, minlength=k)
    forward_rows = xp.nonzero(forward)[0]
    forward_counts = xp.bincount(labels[forward_rows], minlength=k)
    return Clusters(
        labels=labels,
        count=k,
        areas=areas,
        cross=mean_forward_similarity(labels, sim_fwd, areas),
        forward_rows=forward_rows,
        forward_counts=forward_counts,
        reachable=xp.nonzero(forward_counts > 0)[0],
    )
