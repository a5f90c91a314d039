"""Doc §6 backward votes and §8 aggregation together, with votes only where they can change the
mask: `pruned_aggregate` gives exactly doc §8's patch mask on the candidates forward &
backward_candidates(backward_votes(every patch), S), but computes backward votes (the
(rows x Nr x D) GEMM per shot, the dominant cost of steps 6-8) for a few of the forward patches.

Why it is exact. The mask depends on the backward votes only through hits_k, the number of
candidate (= forward AND backward) patches of cluster k:
  (a) the seed is, among clusters with hits_k > 0, the one with the largest <p, q~_k> (ties:
      the smallest id, as argmax over the matched clusters in ascending order);
  (b) cluster k != seed is foreground iff score_k = (cross_k * intra_k) * a_k > threshold, with
      a_k = hits_k / area_k (a cluster without hits scores 0, i.e. a_k = 0 gives the same answer).
Everything else (areas, cross_k, both prototypes, hence <p, q~_k> and intra_k) is computed
without votes, per cluster, bit for bit the same whichever clusters are computed with it
(aggregation.py). And 0 <= hits_k <= fwd_k, the cluster's forward patches. The named steps:
  1. Seed walk (`_seed_walk`): the forward patches cluster by cluster in decreasing <p, q~_k>
     (stable: ties by ascending id), voting a chunk of rows at a time (16, 32, ... rows); the
     seed is the cluster of the first candidate met. Every earlier cluster was fully voted
     without a hit, so this is (a). No candidate at all: the empty mask (doc §6).
  2. Score bounds (`_score_bounds`): hits_k lies in [lo_k, hi_k] (lo_k: hits among the voted
     rows, hi_k: lo_k plus the forward rows not voted yet). a_k (`area_weights`, a float32
     division) is nondecreasing in hits_k and float32 multiplication by a fixed combined_k =
     cross_k * intra_k is monotone, so score_k lies between the float32 scores at lo_k and hi_k:
     when both are on the same side of the threshold, so is score_k, whatever the votes. Before
     that, clusters are decided without even intra_k when |score_k| <= fl(fl(|cross_k| * B) *
     a(hi_k)) cannot reach the threshold, B >= |intra_k| a rigorous bound on float32 dot
     products of float32-normalised vectors (`intra_bound`): their original-space prototypes
     are never computed.
  3. Votes where they matter (`_votes_where_they_matter`): only the clusters left undecided get
     their remaining forward rows voted (one call), and are scored exactly.
  4. Merge (`_merge`): the seed's own score (a_seed = 1) joins the decisions, per patch.
Each call reads every reference patch, so calls are few: step 2 is first planned for the
likeliest seed, the first cluster of the walk (no votes yet: hits_k in [0, fwd_k]), and the rows
its undecided clusters need are voted in the same call as the walk's first chunk. When that
cluster is the seed (the usual case) the narrower bounds after the walk decide a subset of the
same clusters with the same intra values and nothing is left to vote: one call in all.
Otherwise the plan is redone for the actual seed; the extra votes only narrow bounds.

Scores. Every cluster's score comes back as a range, exact where known; kernels/pruned_scores.py
(`score_range`, `exact_cluster_scores`) says which and gives the bounded ones exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from insid3.kernels.aggregation import area_weights, cluster_prototypes, intra_bound, row_dots
from insid3.kernels.arrays import Array, KernelInputError, array_module
from insid3.kernels.matching import ReferenceSide
from insid3.kernels.pruned_ballot import Ballot, Clusters, count_clusters, validated
from insid3.kernels.pruned_scores import score_range

# Rows voted in the first step of the seed walk; each further step doubles it.
FIRST_CHUNK = 16


@dataclass(frozen=True, eq=False)
class PrunedAggregate:
    """patch_mask: (N,) bool, doc §8's patch-level mask. voted_rows: how many target patches got
    backward votes (of the forward ones). seed: the seed cluster's id, None when no patch is a
    candidate (then the mask is empty and every score is 0). score_low, score_high: (K,) float32,
    a range holding each cluster's doc §8 score, a single value where it is known exactly
    (kernels/pruned_scores.py says where)."""

    patch_mask: Array
    voted_rows: int
    seed: int | None
    score_low: Array
    score_high: Array


@dataclass(frozen=True, eq=False)
class _Walk:
    """Step 1's order: the reachable clusters by decreasing <p, q~_k> (ties by id), and their
    forward patches in that order (within a cluster, by index)."""

    clusters: Array
    rows: Array


@dataclass(frozen=True, eq=False)
class _Plan:
    """Step 2 for one seed: decisions (K,) bool (final except for `undecided`), the clusters
    whose intra was needed (`tight`, ascending) with their cross * intra, the seed's score."""

    foreground: Array
    tight: Array
    combined: Array
    seed_score: Array
    undecided: Array


def _walk_order(clusters: Clusters, debiased: Array, prototype: Array) -> _Walk:
    """Step 1's order: <p, q~_k> of the reachable clusters only, sorted (stable) descending."""
    xp = array_module(debiased, prototype)
    labels, reachable = clusters.labels, clusters.reachable
    seed_scores = row_dots(cluster_prototypes(debiased, labels, reachable, clusters.count), prototype)
    walk = reachable[xp.argsort(-seed_scores, kind="stable")]
    rank = xp.full(clusters.count, -1, dtype=xp.int64)
    rank[walk] = xp.arange(walk.shape[0])
    rows = clusters.forward_rows
    return _Walk(clusters=walk, rows=rows[xp.argsort(rank[labels[rows]], kind="stable")])


def _undecided_rows(undecided: Array, walk: _Walk, ballot: Ballot, clusters: Clusters, start: int = 0) -> Array:
    """The forward patches of `undecided` clusters not voted yet, from walk position `start`."""
    xp = array_module(undecided)
    marked = xp.zeros(clusters.count, dtype=bool)
    marked[undecided] = True
    rest = walk.rows[start:]
    return rest[xp.nonzero(marked[clusters.labels[rest]] & ~ballot.is_voted[rest])[0]]


def _seed_walk(walk: _Walk, ballot: Ballot, clusters: Clusters, first_chunk: int) -> int | None:
    """Step 1: vote the walk chunk by chunk (doubling) until a candidate turns up; its cluster
    is the seed. None when every forward patch was voted without one."""
    xp = array_module(walk.rows)
    position, chunk, total = 0, int(first_chunk), int(walk.rows.shape[0])
    while position < total:
        rows = walk.rows[position : position + chunk]
        ballot.cast(ballot.unvoted(rows))
        flags = ballot.is_hit[rows]
        position += int(rows.shape[0])
        if bool(flags.any()):
            return int(clusters.labels[rows[xp.argmax(flags)]])
        chunk *= 2
    return None


def _score_bounds(
    seed: int,
    hits_low: Array,
    hits_high: Array,
    *,
    clusters: Clusters,
    features: Array,
    threshold: np.float32,
    reuse: _Plan | None = None,
) -> _Plan:
    """Step 2: decisions for seed `seed` with hits in [hits_low, hits_high]; reuse: a plan for
    the same seed with wider bounds (its intra values)."""
    xp = array_module(features)
    k, cross, reachable = clusters.count, clusters.cross, clusters.reachable
    others = reachable[reachable != seed]
    low_weight, high_weight = area_weights(hits_low, clusters.areas), area_weights(hits_high, clusters.areas)
    # Without intra: |score| <= fl(fl(|cross| * B) * a(hi)) (monotone float32 rounding).
    reach = (xp.abs(cross[others]) * intra_bound(features.shape[1])) * high_weight[others]
    tight = others[xp.nonzero(~((reach <= threshold) | (-reach > threshold)))[0]]
    if reuse is None:
        ids = xp.concatenate([xp.asarray([seed], dtype=xp.int64), tight])
        prototypes = cluster_prototypes(features, clusters.labels, ids, k)
        combined = cross[ids] * row_dots(prototypes, prototypes[0])
        seed_score, combined = combined[0], combined[1:]  # a_seed = 1: (cross * intra) * 1
    else:  # narrower bounds: tight is a subset of reuse.tight (ascending both)
        seed_score, combined = reuse.seed_score, reuse.combined[xp.searchsorted(reuse.tight, tight)]
    above_low = combined * low_weight[tight] > threshold
    undecided = tight[xp.nonzero(above_low != (combined * high_weight[tight] > threshold))[0]]
    foreground = xp.full(k, bool(np.float32(0) > threshold), dtype=bool)  # no hits: score 0
    foreground[others] = -reach > threshold  # true only when -reach > threshold: decided
    foreground[tight] = above_low
    return _Plan(foreground, tight, combined, seed_score, undecided)


def _votes_where_they_matter(
    plan: _Plan, ballot: Ballot, walk: _Walk, clusters: Clusters, threshold: np.float32
) -> Array:
    """Step 3: the (K,) decisions of `plan`, with its undecided clusters' remaining rows voted
    and those clusters scored exactly (none are left when the walk's first cluster was the
    seed: their rows were voted with the first chunk)."""
    foreground = plan.foreground.copy()
    undecided = plan.undecided
    if undecided.shape[0]:
        xp = array_module(undecided)
        ballot.cast(_undecided_rows(undecided, walk, ballot, clusters))
        hits, _ = ballot.hit_bounds(clusters)
        position = xp.searchsorted(plan.tight, undecided)  # tight is ascending
        weight = area_weights(hits[undecided], clusters.areas[undecided])
        foreground[undecided] = plan.combined[position] * weight > threshold
    return foreground


def _merge(foreground: Array, plan: _Plan, seed: int, clusters: Clusters, threshold: np.float32) -> Array:
    """Step 4: the (N,) bool patch mask of step 3's (K,) decisions, which it completes in place
    with the seed's own score (a_seed = 1)."""
    foreground[seed] = plan.seed_score > threshold
    return foreground[clusters.labels]


def _no_candidate(n: int, voted_rows: int, clusters: int, xp: ModuleType) -> PrunedAggregate:
    zeros = xp.zeros(clusters, dtype=xp.float32)
    return PrunedAggregate(xp.zeros(n, dtype=bool), voted_rows, None, zeros, zeros.copy())


def pruned_aggregate(
    *,
    labels: Array,
    forward: Array,
    features: Array,
    debiased: Array,
    sim_fwd: Array,
    reference: ReferenceSide,
    merge_threshold: float,
    first_chunk: int = FIRST_CHUNK,
) -> PrunedAggregate:
    """Doc §6 backward matching and §8 seed + merge for cluster labels (N,) int in [0, K), the
    forward candidates (N,) bool, features (N, C) and debiased (N, D) float32 (original and
    debiased target features), sim_fwd (N,) float32, and the reference side (its debiased shots
    and prototype in the target's debiased coordinates).

    Returns doc §8's patch mask on the candidates forward & backward (exactly: see the module
    docstring), the number of patches that were voted, and the seed.
    Host syncs: K, the number of reachable / undecided clusters, one per step of the seed walk.
    """
    xp = validated(labels, forward, features, debiased, sim_fwd, reference)
    if int(first_chunk) < 1:
        raise KernelInputError(f"pruned_aggregate: first_chunk must be >= 1, got {first_chunk!r}")
    n = labels.shape[0]
    threshold = xp.float32(merge_threshold)
    clusters = count_clusters(labels, forward, sim_fwd)
    if clusters.reachable.shape[0] == 0:
        return _no_candidate(n, 0, clusters.count, xp)
    walk = _walk_order(clusters, debiased, reference.prototype)
    ballot = Ballot(debiased, reference)
    # Guess: the seed is the first cluster of the walk (the usual case). Its undecided clusters'
    # rows are voted in the same call as the first chunk, so that a right guess needs one call.
    guess, first = int(walk.clusters[0]), int(first_chunk)
    scoring = {"clusters": clusters, "features": features, "threshold": threshold}
    guessed = _score_bounds(guess, xp.zeros(clusters.count, dtype=xp.int64), clusters.forward_counts, **scoring)
    ballot.cast(xp.concatenate([walk.rows[:first], _undecided_rows(guessed.undecided, walk, ballot, clusters, first)]))
    seed = _seed_walk(walk, ballot, clusters, first)
    if seed is None:  # no candidate patch: the empty mask (doc §6), whatever the threshold
        return _no_candidate(n, ballot.count, clusters.count, xp)
    hits_low, hits_high = ballot.hit_bounds(clusters)
    final = _score_bounds(seed, hits_low, hits_high, **scoring, reuse=guessed if seed == guess else None)
    foreground = _votes_where_they_matter(final, ballot, walk, clusters, threshold)
    low, high = score_range(tight=final.tight, combined=final.combined, seed_score=final.seed_score, ballot=ballot,
                            seed=seed, clusters=clusters, channels=int(features.shape[1]))
    return PrunedAggregate(_merge(foreground, final, seed, clusters, threshold), ballot.count, seed, low, high)

