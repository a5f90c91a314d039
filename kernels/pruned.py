"""Doc §6 backward votes and §8 aggregation together, with votes only where they can change the
mask: `pruned_aggregate` equals

    aggregate(labels, forward & backward_candidates(backward_votes(...), S), ...)

exactly, but computes backward votes (the (rows x Nr x D) GEMM per shot, the dominant cost of
steps 6-8) for a small fraction of the forward patches.

Why it is exact. The mask depends on the backward votes only through hits_k, the number of
candidate (= forward AND backward) patches of cluster k:
  (a) the seed is, among clusters with hits_k > 0, the one with the largest <p, q~_k> (ties:
      the smallest id, as argmax over the matched clusters in ascending order);
  (b) cluster k != seed is foreground iff score_k = (cross_k * intra_k) * a_k > threshold, with
      a_k = hits_k / area_k (a cluster without hits scores 0, i.e. a_k = 0 gives the same answer).
Everything else (areas, cross_k, both prototypes, hence <p, q~_k> and intra_k) is computed
without votes, per cluster, bit for bit as `aggregate` computes it (aggregation.py: every
per-cluster quantity depends only on that cluster's patches). And 0 <= hits_k <= fwd_k, the
number of forward patches of cluster k, since candidate implies forward. So:
  1. Seed: walk the forward patches cluster by cluster in decreasing <p, q~_k> (stable, so ties
     by ascending id), voting a chunk of rows at a time (chunks double: 16, 32, ... rows); the
     seed is the cluster of the first candidate met. Every earlier cluster was fully voted
     without a hit, so this is (a). No candidate at all: the empty mask, as `aggregate`.
  2. Bounds: after the walk, hits_k is known to lie in [lo_k, hi_k] (lo_k: hits among the voted
     rows, hi_k: lo_k plus the forward rows not voted yet). a_k is the float32 division of
     `area_weights`, nondecreasing in hits_k, and float32 multiplication by a fixed combined_k
     = cross_k * intra_k is monotone, so score_k lies between the float32 scores at lo_k and
     hi_k: when both are on the same side of the threshold, so is score_k, whatever the votes.
     Before that, clusters are decided without even intra_k when |score_k| <= fl(fl(|cross_k| *
     B) * a(hi_k)) cannot reach the threshold, with B >= |intra_k| a rigorous bound on float32
     dot products of float32-normalised vectors (`intra_bound`); their original-space prototypes
     are then never computed.
  3. Only the clusters left undecided get their remaining forward rows voted (one call), and
     are scored exactly.
Each call reads every reference patch, so calls are few: step 2 is first planned for the
likeliest seed, the first cluster of the walk (with no votes yet, hits_k in [0, fwd_k]), and
the rows its undecided clusters need are voted in the same call as the walk's first chunk.
When that cluster is the seed (the usual case) the narrower bounds after the walk decide a
subset of the same clusters with the same intra values and nothing is left to vote: one call
in all. Otherwise the plan is redone for the actual seed; the extra votes only narrow bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insid3.kernels.aggregation import (
    area_weights,
    cluster_prototypes,
    mean_forward_similarity,
    row_dots,
)
from insid3.kernels.arrays import Array, KernelInputError, array_module, require
from insid3.kernels.matching import backward_candidates, backward_votes

# Rows voted in the first step of the seed walk; each further step doubles it.
FIRST_CHUNK = 16


@dataclass(frozen=True, eq=False)
class PrunedAggregate:
    """patch_mask: (N,) bool, doc §8's patch-level mask. voted_rows: how many target patches got
    backward votes (of the forward ones). seed: the seed cluster's id, None when no patch is a
    candidate (then the mask is empty)."""

    patch_mask: Array
    voted_rows: int
    seed: int | None


@dataclass(frozen=True, eq=False)
class _Plan:
    """Step 2 for one seed: decisions (K,) bool (final except for `undecided`), the clusters
    whose intra was needed (`tight`, ascending) with their cross * intra, the seed's score."""

    foreground: Array
    tight: Array
    combined: Array
    seed_score: Array
    undecided: Array


def intra_bound(channels: int) -> np.float32:
    """A float32 B >= |intra_k| for intra_k = <q_seed, q_k> computed as `row_dots` of two rows of
    `normalize_rows` (C = channels): with u = 2^-24 and g = C u / (1 - C u), a float32 dot product
    is within (1 + g) of the sum of |products|, and a float32-normalised row has norm at most
    (1 + u) / ((1 - u) sqrt(1 - g)), so |intra| <= (1 + g)(1 + u)^3 / ((1 - g)(1 - u)^2)
    <= 1 + 2g + 6u < 1 + (4 C + 8) u (while C u < 1/8)."""
    return np.float32(1.0 + (4 * int(channels) + 8) * 2.0**-24)


def _votes(debiased: Array, rows: Array, reference_debiased: Array, reference_masks: Array) -> Array:
    """Candidate flags (forward already known) of `rows`: backward majority vote."""
    votes = backward_votes(debiased[rows], reference_debiased, reference_masks)
    return backward_candidates(votes, int(reference_debiased.shape[0]))


def pruned_aggregate(
    labels: Array,
    forward: Array,
    features: Array,
    debiased: Array,
    sim_fwd: Array,
    prototype: Array,
    reference_debiased: Array,
    reference_masks: Array,
    merge_threshold: float,
    *,
    first_chunk: int = FIRST_CHUNK,
) -> PrunedAggregate:
    """Doc §6 backward matching and §8 seed + merge for cluster labels (N,) int in [0, K),
    the forward candidates (N,) bool, features (N, C) and debiased (N, D) float32 (original and
    debiased target features, as `aggregate`), sim_fwd (N,) float32, the prototype (D,),
    reference_debiased (S, Nr, D) float32 and reference_masks (S, Nr) bool (as `backward_votes`).

    Returns the patch mask of `aggregate(labels, forward & backward candidates, ...)` (exactly:
    see the module docstring), the number of patches that were voted, and the seed.
    Host syncs: K, the number of reachable / undecided clusters, one per step of the seed walk.
    """
    fn = "pruned_aggregate"
    require(fn, "labels", labels, ndim=1, dtype="integer")
    n = labels.shape[0]
    require(fn, "forward", forward, shape=(n,), dtype="bool")
    require(fn, "features", features, shape=(n, None), dtype="float32")
    require(fn, "debiased", debiased, shape=(n, None), dtype="float32")
    width = debiased.shape[1]
    require(fn, "sim_fwd", sim_fwd, shape=(n,), dtype="float32")
    require(fn, "prototype", prototype, shape=(width,), dtype="float32")
    require(fn, "reference_debiased", reference_debiased, shape=(None, None, width), dtype="float32")
    shots, ref_patches, _ = reference_debiased.shape
    require(fn, "reference_masks", reference_masks, shape=(shots, ref_patches), dtype="bool")
    xp = array_module(labels, forward, features, debiased, sim_fwd, prototype, reference_debiased, reference_masks)
    if n == 0:
        raise KernelInputError(f"{fn}: labels is empty")
    if int(first_chunk) < 1:
        raise KernelInputError(f"{fn}: first_chunk must be >= 1, got {first_chunk!r}")
    if int(labels.min()) < 0:
        raise KernelInputError(f"{fn}: labels must be >= 0, got a minimum of {int(labels.min())}")
    labels = labels.astype(xp.int64, copy=False)
    k = int(labels.max()) + 1
    threshold = xp.float32(merge_threshold)
    areas = xp.bincount(labels, minlength=k)
    forward_rows = xp.nonzero(forward)[0]
    forward_counts = xp.bincount(labels[forward_rows], minlength=k)
    cross = mean_forward_similarity(labels, sim_fwd, areas)
    reachable = xp.nonzero(forward_counts > 0)[0]  # the only clusters that can hold a candidate
    if reachable.shape[0] == 0:
        return PrunedAggregate(xp.zeros(n, dtype=bool), 0, None)

    # 1. Seed walk: forward rows cluster by cluster in decreasing <p, q~_k> (stable: ties by id).
    seed_scores = row_dots(cluster_prototypes(debiased, labels, reachable, k), prototype)
    walk = reachable[xp.argsort(-seed_scores, kind="stable")]
    rank = xp.full(k, -1, dtype=xp.int64)
    rank[walk] = xp.arange(walk.shape[0])
    rows_in_walk = forward_rows[xp.argsort(rank[labels[forward_rows]], kind="stable")]
    total = int(rows_in_walk.shape[0])
    is_voted = xp.zeros(n, dtype=bool)  # patches voted so far
    is_hit = xp.zeros(n, dtype=bool)  # ... that are candidates
    voted = 0

    def vote(rows: Array) -> None:
        nonlocal voted
        if rows.shape[0]:
            is_voted[rows] = True
            is_hit[rows] = _votes(debiased, rows, reference_debiased, reference_masks)
            voted += int(rows.shape[0])

    def plan(seed: int, hits_low: Array, hits_high: Array, reuse: _Plan | None = None) -> _Plan:
        """Decisions for seed `seed` with hits in [hits_low, hits_high] (step 2 of the module
        docstring); reuse: a plan for the same seed with wider bounds (its intra values)."""
        others = reachable[reachable != seed]
        low_weight, high_weight = area_weights(hits_low, areas), area_weights(hits_high, areas)
        # Without intra: |score| <= fl(fl(|cross| * B) * a(hi)) (monotone float32 rounding).
        reach = (xp.abs(cross[others]) * bound) * high_weight[others]
        tight = others[xp.nonzero(~((reach <= threshold) | (-reach > threshold)))[0]]
        if reuse is None:
            ids = xp.concatenate([xp.asarray([seed], dtype=xp.int64), tight])
            prototypes = cluster_prototypes(features, labels, ids, k)
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

    def hit_bounds() -> tuple[Array, Array]:
        low = xp.bincount(labels[xp.nonzero(is_hit)[0]], minlength=k)
        return low, low + forward_counts - xp.bincount(labels[xp.nonzero(is_voted)[0]], minlength=k)

    def undecided_rows(undecided: Array, start: int = 0) -> Array:
        """The forward patches of `undecided` clusters not voted yet, from walk position `start`."""
        marked = xp.zeros(k, dtype=bool)
        marked[undecided] = True
        rest = rows_in_walk[start:]
        return rest[xp.nonzero(marked[labels[rest]] & ~is_voted[rest])[0]]

    # Guess: the seed is the first cluster of the walk (the usual case). Its undecided clusters'
    # rows are voted in the same call as the first chunk, so that a right guess needs one call.
    bound = intra_bound(features.shape[1])
    guess = int(walk[0])
    guessed = plan(guess, xp.zeros(k, dtype=xp.int64), forward_counts)
    vote(xp.concatenate([rows_in_walk[:first_chunk], undecided_rows(guessed.undecided, int(first_chunk))]))
    position, chunk, seed = 0, int(first_chunk), None
    while position < total:
        rows = rows_in_walk[position : position + chunk]
        vote(rows[xp.nonzero(~is_voted[rows])[0]])
        flags = is_hit[rows]
        position += int(rows.shape[0])
        if bool(flags.any()):
            seed = int(labels[rows[xp.argmax(flags)]])
            break
        chunk *= 2
    if seed is None:  # no candidate patch: the empty mask (doc §6), whatever the threshold
        return PrunedAggregate(xp.zeros(n, dtype=bool), voted, None)

    # 2. Bounds on hits from the rows voted so far; 3. exact scores where they disagree.
    hits_low, hits_high = hit_bounds()
    final = plan(seed, hits_low, hits_high, guessed if seed == guess else None)
    undecided = final.undecided
    foreground = final.foreground
    if undecided.shape[0]:  # none when the guess was right: their rows were voted with it
        vote(undecided_rows(undecided))
        hits, _ = hit_bounds()
        position = xp.searchsorted(final.tight, undecided)  # tight is ascending
        foreground[undecided] = final.combined[position] * area_weights(hits[undecided], areas[undecided]) > threshold
    foreground[seed] = final.seed_score > threshold
    return PrunedAggregate(foreground[labels], voted, seed)
