"""Doc §8's per-cluster scores around `pruned_aggregate` (kernels/pruned.py): the range each
cluster's score is known to lie in after the pruned votes (`score_range`), and the exact score
where a range is not enough (`exact_cluster_scores`).

The mask needs score_k exactly only where its bounds straddle the threshold, so the result
carries every cluster's score as a range [score_low_k, score_high_k]: a single value (low ==
high, the exact float32 score) for the seed, for clusters that cannot have a hit (no forward
patch, or every forward patch voted without one: 0), and for every cluster whose intra_k was
computed and whose forward patches were all voted; otherwise the float32 scores at the hit
bounds, or +-fl(fl(|cross_k| * B) * a(hi_k)) where intra_k was never computed (B the bound of
aggregation.intra_bound). Whoever needs a bounded score exactly (the label map of several
concepts, where two concepts claim one cluster) asks `exact_cluster_scores`, which votes the
rest of those clusters' forward patches and gives the same float32 value the full computation
would.
"""

from __future__ import annotations

from insid3.kernels.aggregation import area_weights, cluster_prototypes, intra_bound, row_dots
from insid3.kernels.arrays import Array, KernelInputError, array_module
from insid3.kernels.matching import ReferenceSide
from insid3.kernels.pruned_ballot import Ballot, Clusters, count_clusters, validated


def score_range(
    *, tight: Array, combined: Array, seed_score: Array, ballot: Ballot, seed: int, clusters: Clusters, channels: int
) -> tuple[Array, Array]:
    """(low, high) (K,) float32 around every cluster's score once the votes are cast (module
    docstring): `tight` (ascending) the clusters whose cross * intra is known (`combined`),
    `seed_score` the seed's exact score, `channels` the original features' width (for B)."""
    xp = array_module(combined)
    hits_low, hits_high = ballot.hit_bounds(clusters)
    low, high = xp.zeros(clusters.count, dtype=xp.float32), xp.zeros(clusters.count, dtype=xp.float32)
    others = clusters.reachable[clusters.reachable != seed]
    reach = (xp.abs(clusters.cross[others]) * intra_bound(channels)) * area_weights(hits_high[others],
                                                                                    clusters.areas[others])
    low[others], high[others] = -reach, reach
    at_low = combined * area_weights(hits_low[tight], clusters.areas[tight])
    at_high = combined * area_weights(hits_high[tight], clusters.areas[tight])
    low[tight], high[tight] = xp.minimum(at_low, at_high), xp.maximum(at_low, at_high)  # combined may be < 0
    low[seed] = high[seed] = seed_score
    return low, high


def exact_cluster_scores(
    *,
    labels: Array,
    forward: Array,
    features: Array,
    debiased: Array,
    sim_fwd: Array,
    reference: ReferenceSide,
    seed: int,
    clusters: Array,
) -> Array:
    """Doc §8's float32 score of each cluster in `clusters` ((M,) distinct ids) given the seed
    `seed` (pruned_aggregate's), the other arguments as pruned_aggregate's: (M,) float32, bit for
    bit what §8 computes with every patch voted. Votes every forward patch of `clusters` (a row's
    vote does not depend on which rows are voted with it, matching.backward_votes), and computes
    cross_k * intra_k from those clusters' own patches (aggregation.py: the same bits whichever
    clusters are computed together). score_seed = cross * intra (a_seed = 1)."""
    xp = validated(labels, forward, features, debiased, sim_fwd, reference)
    stats = count_clusters(labels, forward, sim_fwd)
    ids = xp.asarray(clusters, dtype=xp.int64).reshape(-1)
    if ids.shape[0] and (int(ids.min()) < 0 or int(ids.max()) >= stats.count):
        raise KernelInputError(f"exact_cluster_scores: cluster ids must lie in [0, {stats.count})")
    if not 0 <= int(seed) < stats.count:
        raise KernelInputError(f"exact_cluster_scores: seed {seed} is not a cluster id in [0, {stats.count})")
    marked = xp.zeros(stats.count, dtype=bool)
    marked[ids] = True
    rows = stats.forward_rows[xp.nonzero(marked[stats.labels[stats.forward_rows]])[0]]
    ballot = Ballot(debiased, reference)
    ballot.cast(rows)
    hits = xp.bincount(stats.labels[xp.nonzero(ballot.is_hit)[0]], minlength=stats.count)
    others = ids[ids != int(seed)]
    both = xp.concatenate([xp.asarray([int(seed)], dtype=xp.int64), others])
    prototypes = cluster_prototypes(features, stats.labels, both, stats.count)
    combined = stats.cross[both] * row_dots(prototypes, prototypes[0])
    scores = xp.zeros(stats.count, dtype=xp.float32)
    scores[others] = combined[1:] * area_weights(hits[others], stats.areas[others])
    scores[int(seed)] = combined[0]
    return scores[ids]
