"""The per-cluster scores pruned_aggregate reports (a range, exact where known) and
exact_cluster_scores, against doc §8 with every patch voted and every cluster scored in the
kernels' float32 arithmetic."""

import numpy as np
import pytest
from support.kernel_oracle import host
from support.random_features import unit_rows

from insid3.kernels import ReferenceSide, exact_cluster_scores, forward_candidates, forward_similarity, pruned_aggregate
from insid3.kernels.aggregation import area_weights, cluster_prototypes, mean_forward_similarity, row_dots
from insid3.kernels.arrays import KernelInputError
from insid3.kernels.matching import backward_candidates, backward_votes


def _case(seed, n, k, c, shots):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)]).astype(np.int64)
    rng.shuffle(labels)
    refs = unit_rows(rng, shots, int(rng.integers(5, 60)), c)
    masks = rng.random(refs.shape[:2]) < rng.uniform(0.2, 0.8)
    return labels, unit_rows(rng, n, c), unit_rows(rng, n, c), unit_rows(rng, c), refs, masks


def _all_scores(labels, candidate, features, debiased, sim, proto):
    """Doc §8's score of every cluster (every patch voted), float32 as the kernels compute it;
    (scores (K,), seed) or (None, None) without a candidate."""
    if not candidate.any():
        return None, None
    k = int(labels.max()) + 1
    areas = np.bincount(labels, minlength=k)
    hits = np.bincount(labels[candidate], minlength=k)
    matched = np.nonzero(hits > 0)[0]
    seed = int(matched[np.argmax(row_dots(cluster_prototypes(debiased, labels, matched, k), proto))])
    everyone = np.arange(k)
    originals = cluster_prototypes(features, labels, everyone, k)
    weight = area_weights(hits, areas)
    weight[seed] = 1
    return mean_forward_similarity(labels, sim, areas) * row_dots(originals, originals[seed]) * weight, seed


@pytest.mark.parametrize("shots", [1, 3])
def test_score_ranges_hold_the_full_scores_and_are_exact_where_single(shots):
    exact_seen = bounded_seen = 0
    for case in range(20):
        rng = np.random.default_rng(100 * shots + case)
        n = int(rng.integers(2, 150))
        k = int(rng.integers(1, n + 1))
        labels, features, debiased, proto, refs, masks = _case(100 * shots + case, n, k, 12, shots)
        threshold = float(rng.choice([-0.2, 0.0, 0.2, 0.4]))
        sim = forward_similarity(debiased, proto)
        forward = forward_candidates(sim)
        candidate = forward & backward_candidates(backward_votes(debiased, refs, masks), shots)
        reference = ReferenceSide(debiased=refs, patch_masks=masks, prototype=proto)
        arguments = dict(labels=labels, forward=forward, features=features, debiased=debiased, sim_fwd=sim,
                         reference=reference)
        result = pruned_aggregate(**arguments, merge_threshold=threshold)
        full, seed = _all_scores(labels, candidate, features, debiased, sim, proto)
        low, high = host(result.score_low), host(result.score_high)
        assert low.dtype == high.dtype == np.float32 and low.shape == high.shape == (k,)
        if full is None:
            assert result.seed is None and not low.any() and not high.any()
            continue
        assert result.seed == seed
        assert np.all(low <= full) and np.all(full <= high)
        single = low == high
        np.testing.assert_array_equal(low[single], full[single])
        assert single[seed] and single[np.bincount(labels[forward], minlength=k) == 0].all()
        exact_seen, bounded_seen = exact_seen + int(single.sum()), bounded_seen + int((~single).sum())
        # exact_cluster_scores: the full score of any clusters, bit for bit, the seed's included.
        asked = rng.permutation(k)[: int(rng.integers(1, k + 1))]
        exact = host(exact_cluster_scores(**arguments, seed=seed, clusters=asked))
        np.testing.assert_array_equal(exact, full[asked])
    assert exact_seen and bounded_seen  # both kinds were exercised


def test_exact_cluster_scores_checks_its_ids():
    labels, features, debiased, proto, refs, masks = _case(0, 30, 4, 8, 1)
    sim = forward_similarity(debiased, proto)
    arguments = dict(labels=labels, forward=forward_candidates(sim), features=features, debiased=debiased,
                     sim_fwd=sim, reference=ReferenceSide(debiased=refs, patch_masks=masks, prototype=proto))
    with pytest.raises(KernelInputError, match=r"cluster ids must lie in \[0, 4\)"):
        exact_cluster_scores(**arguments, seed=0, clusters=np.array([4]))
    with pytest.raises(KernelInputError, match="seed 7 is not a cluster id"):
        exact_cluster_scores(**arguments, seed=7, clusters=np.array([1]))
