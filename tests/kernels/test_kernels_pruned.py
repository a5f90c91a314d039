"""pruned_aggregate (backward votes only where they can change the mask) against doc §8 on the
full votes (every patch voted, every cluster scored, in the kernels' float32 arithmetic: built
here, `_full_votes`), and against the oracle's loops: the same patch mask in every case,
including no candidate at all, a single reachable cluster, one cluster, N clusters, negative
thresholds and seed walks that pass over clusters without a hit."""

import math

import numpy as np
import pytest
from support import kernel_oracle as oracle
from support.kernel_oracle import host
from support.random_features import unit_rows

from insid3.benchmarks.synthetic import synthetic_patch_features
from insid3.kernels import ReferenceSide, array_module, forward_candidates, forward_similarity, pruned_aggregate
from insid3.kernels.aggregation import (
    area_weights,
    cluster_prototypes,
    intra_bound,
    mean_forward_similarity,
    normalize_rows,
    row_dots,
)
from insid3.kernels.arrays import KernelInputError
from insid3.kernels.matching import backward_candidates, backward_votes


def _random_case(seed, n, k, c, shots, mask_density=0.5, ref_patches=None):
    """Random features, labels with every cluster non-empty, independent random references."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)]).astype(np.int64)
    rng.shuffle(labels)
    features, debiased = unit_rows(rng, n, c), unit_rows(rng, n, c)
    refs = unit_rows(rng, shots, ref_patches or n, c)
    masks = rng.random((shots, refs.shape[1])) < mask_density
    proto = unit_rows(rng, c)
    return labels, features, debiased, proto, refs, masks


def _copy_references(debiased, backward, shots):
    """References whose patch j is target patch j (so each target patch's nearest reference patch
    is itself): the backward candidates are then exactly `backward`, every shot the same."""
    return np.stack([debiased] * shots), np.stack([backward] * shots)


def _full_votes(labels, candidate, features, debiased, sim, proto, threshold):
    """Doc §8 with every patch voted and every matched cluster scored, no pruning, in the same
    float32 per-cluster reductions as the kernels: the yardstick pruned_aggregate must equal
    bit for bit. (patch mask, seed id or None)."""
    xp = array_module(labels, candidate, features, debiased, sim, proto)
    if not bool(candidate.any()):
        return xp.zeros(labels.shape[0], dtype=bool), None
    labels = labels.astype(xp.int64)
    k = int(labels.max()) + 1
    areas = xp.bincount(labels, minlength=k)
    hits = xp.bincount(labels[xp.nonzero(candidate)[0]], minlength=k)
    matched = xp.nonzero(hits > 0)[0]
    seed = xp.argmax(row_dots(cluster_prototypes(debiased, labels, matched, k), proto))  # first on ties
    originals = cluster_prototypes(features, labels, matched, k)
    intra = row_dots(originals, originals[seed])
    weight = area_weights(hits[matched], areas[matched])
    weight[seed] = 1
    score = xp.zeros(k, dtype=xp.float32)  # unmatched clusters score 0
    score[matched] = mean_forward_similarity(labels, sim, areas)[matched] * intra * weight
    return score[labels] > xp.float32(threshold), int(matched[seed])


def _pruned(labels, forward, features, debiased, sim, proto, refs, masks, threshold, **kwargs):
    reference = ReferenceSide(debiased=refs, patch_masks=masks, prototype=proto)
    return pruned_aggregate(labels=labels, forward=forward, features=features, debiased=debiased, sim_fwd=sim,
                            reference=reference, merge_threshold=threshold, **kwargs)


def _both(xp, labels, features, debiased, proto, refs, masks, threshold, **kwargs):
    """(pruned result, the full-votes mask, the forward mask, the candidates), checked on the host."""
    arrays = [xp.asarray(a) for a in (labels, features, debiased, proto, refs, masks)]
    labels_, features_, debiased_, proto_, refs_, masks_ = arrays
    sim = forward_similarity(debiased_, proto_)
    forward = forward_candidates(sim)
    votes = backward_votes(debiased_, refs_, masks_)  # every row, not only the forward ones
    candidate = forward & backward_candidates(votes, refs.shape[0])
    full, seed = _full_votes(labels_, candidate, features_, debiased_, sim, proto_, threshold)
    pruned = _pruned(labels_, forward, features_, debiased_, sim, proto_, refs_, masks_, threshold, **kwargs)
    assert pruned.patch_mask.dtype == bool and pruned.patch_mask.shape == labels.shape
    np.testing.assert_array_equal(host(pruned.patch_mask), host(full))
    assert pruned.seed == seed
    assert 0 <= pruned.voted_rows <= int(host(forward).sum())
    return pruned, host(full), host(forward), host(candidate)


@pytest.mark.parametrize("shots", [1, 2, 3, 4, 5])
def test_equals_full_votes_on_random_cases(xp, shots):
    rng = np.random.default_rng(shots)
    for case in range(12):
        n = int(rng.integers(1, 160))
        k = int(rng.integers(1, n + 1))
        c = int(rng.integers(2, 24))
        threshold = float(rng.choice([-0.3, -0.01, 0.0, 0.05, 0.2, 0.5]))
        args = _random_case(1000 * shots + case, n, k, c, shots, mask_density=rng.uniform(0.1, 0.9),
                            ref_patches=int(rng.integers(1, 80)))
        pruned, full, _, candidate = _both(xp, *args, threshold, first_chunk=int(rng.choice([1, 3, 16])))
        assert (pruned.seed is None) == (not candidate.any())


@pytest.mark.parametrize("threshold", [-0.5, -1e-3, 0.0, 0.1, 0.2, 0.35])
def test_equals_the_oracle(xp, threshold):
    """Against the loop transcription of doc §6 and §8 (float64 NN search, per-cluster loops)."""
    for seed in range(4):
        labels, features, debiased, proto, refs, masks = _random_case(seed, 120, 15, 12, 3, ref_patches=50)
        pruned, _, _, _ = _both(xp, labels, features, debiased, proto, refs, masks, threshold)
        sim, forward = oracle.forward(debiased, proto)
        candidate = forward & oracle.backward(debiased, refs, masks)
        expected = oracle.aggregate(labels, candidate, features, debiased, sim, proto, threshold)
        np.testing.assert_array_equal(host(pruned.patch_mask), expected)


@pytest.mark.parametrize("threshold", [-0.4, 0.2])
def test_no_candidate_at_all_gives_the_empty_mask(xp, threshold):
    rng = np.random.default_rng(3)
    labels, features, debiased, proto = np.arange(60) % 7, unit_rows(rng, 60, 16), unit_rows(rng, 60, 16), unit_rows(rng, 16)
    refs, masks = _copy_references(debiased, np.zeros(60, dtype=bool), 2)
    pruned, full, forward, candidate = _both(xp, labels, features, debiased, proto, refs, masks, threshold, first_chunk=4)
    assert not candidate.any() and not full.any() and pruned.seed is None
    assert pruned.voted_rows == forward.sum()  # the walk voted every forward patch without a hit


def test_the_seed_is_the_only_reachable_cluster(xp):
    """Forward patches all in one cluster: it is the seed, every other cluster scores 0."""
    rng = np.random.default_rng(4)
    n, c = 80, 16
    labels = np.arange(n) % 5
    features, proto = unit_rows(rng, n, c), unit_rows(rng, c)
    sign = np.where(labels == 2, 1.0, -1.0)[:, None]  # cluster 2 towards p, the others away
    debiased = sign * proto[None, :] + 0.3 * unit_rows(rng, n, c)
    debiased = (debiased / np.linalg.norm(debiased, axis=1, keepdims=True)).astype(np.float32)
    sim = debiased @ proto
    assert (sim[labels != 2] < 0).all() and (sim[labels == 2] > 0).all()
    refs, masks = _copy_references(debiased, rng.random(n) < 0.5, 1)
    for threshold in (-0.2, 0.0, 0.2, 0.9):
        pruned, full, forward, _ = _both(xp, labels, features, debiased, proto, refs, masks, threshold)
        assert set(labels[forward]) == {2} and pruned.seed == 2


@pytest.mark.parametrize("shots", [1, 4])
def test_all_one_cluster_and_every_patch_its_own_cluster(xp, shots):
    rng = np.random.default_rng(shots)
    n, c = 150, 8
    features, debiased, proto = unit_rows(rng, n, c), unit_rows(rng, n, c), unit_rows(rng, c)
    refs = unit_rows(rng, shots, 90, c)
    masks = rng.random((shots, 90)) < 0.5
    for labels in (np.zeros(n, dtype=np.int64), np.arange(n)):
        for threshold in (-0.2, 0.0, 0.2):
            pruned, _, _, candidate = _both(xp, labels, features, debiased, proto, refs, masks, threshold, first_chunk=2)
            assert candidate.any() and pruned.seed is not None


def test_the_walk_passes_over_clusters_without_a_hit(xp):
    """The clusters with the largest <p, q~_k> hold no candidate: the walk must vote them all,
    one chunk after another, and pick the first cluster with a hit, as the full votes' argmax."""
    rng = np.random.default_rng(6)
    n, k, c = 200, 20, 16
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)]).astype(np.int64)
    features, debiased, proto = unit_rows(rng, n, c), unit_rows(rng, n, c), unit_rows(rng, c)
    sim = debiased @ proto
    forward = host(forward_candidates(np.asarray(sim)))
    reachable = np.unique(labels[forward])
    order = reachable[np.argsort(-(oracle.cluster_prototypes(debiased, labels, k)[reachable] @ proto), kind="stable")]
    backward = rng.random(n) < 0.6
    backward[np.isin(labels, order[:5])] = False  # the five best clusters: no candidate
    refs, masks = _copy_references(debiased, backward, 3)
    for first_chunk in (1, 2, 7, 10_000):
        pruned, full, _, candidate = _both(xp, labels, features, debiased, proto, refs, masks, 0.05, first_chunk=first_chunk)
        _, seed = _full_votes(*(xp.asarray(a) for a in (labels, candidate, features, debiased, sim, proto)), 0.05)
        assert pruned.seed == seed == order[5]
        assert pruned.voted_rows >= forward[np.isin(labels, order[:5])].sum()


def test_votes_are_pruned_on_realistic_features(xp):
    """Clustered synthetic features (as the benchmark): most forward patches need no vote."""
    labels, target, proto, refs, masks = _scene(xp, 2)
    pruned, full, forward, _ = _both(xp, labels, target, target, proto, refs, masks, 0.2)
    assert full.any() and pruned.voted_rows < forward.sum() / 2


def test_intra_bound_holds(xp):
    rng = np.random.default_rng(8)
    for c in (2, 3, 16, 1024):
        rows = xp.asarray(rng.standard_normal((400, c)).astype(np.float32) * rng.uniform(1e-3, 1e3, (400, 1)).astype(np.float32))
        q = normalize_rows(rows)
        q = xp.concatenate([q, q[:1]])  # the seed against itself
        intra = host(row_dots(q, q[-1]))
        assert np.abs(intra).max() <= intra_bound(c) and intra_bound(c) < 1 + 1e-3


def test_cluster_prototypes_do_not_depend_on_the_other_clusters(xp):
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 30, 500)
    values = xp.asarray(unit_rows(rng, 500, 33))
    every = host(cluster_prototypes(values, xp.asarray(labels), xp.arange(30), 30))
    for subset in ([7], [29, 3], list(range(0, 30, 4))):
        some = host(cluster_prototypes(values, xp.asarray(labels), xp.asarray(np.array(subset)), 30))
        np.testing.assert_array_equal(some, every[subset])


def test_bad_inputs(xp):
    labels, features, debiased, proto, refs, masks = (xp.asarray(a) for a in _random_case(0, 10, 3, 4, 2))
    sim = forward_similarity(debiased, proto)
    forward = forward_candidates(sim)
    with pytest.raises(KernelInputError, match=r"pruned_aggregate: reference.patch_masks must have shape \(2, 10\)"):
        _pruned(labels, forward, features, debiased, sim, proto, refs, masks[:, :9], 0.2)
    with pytest.raises(KernelInputError, match=r"pruned_aggregate: reference.prototype must have shape \(4,\)"):
        _pruned(labels, forward, features, debiased, sim, proto[:3], refs, masks, 0.2)
    with pytest.raises(KernelInputError, match=r"pruned_aggregate: forward must have shape \(10,\)"):
        _pruned(labels, forward[:9], features, debiased, sim, proto, refs, masks, 0.2)
    with pytest.raises(KernelInputError, match=r"pruned_aggregate: labels must be integer, got shape \(10,\) dtype float32"):
        _pruned(labels.astype(xp.float32), forward, features, debiased, sim, proto, refs, masks, 0.2)
    with pytest.raises(KernelInputError, match=r"pruned_aggregate: debiased must have shape \(10, \*\), got shape \(9, 4\)"):
        _pruned(labels, forward, features, debiased[:9], sim, proto, refs, masks, 0.2)
    with pytest.raises(KernelInputError, match="labels must be >= 0"):
        _pruned(labels - 1, forward, features, debiased, sim, proto, refs, masks, 0.2)
    with pytest.raises(KernelInputError, match="first_chunk must be >= 1"):
        _pruned(labels, forward, features, debiased, sim, proto, refs, masks, 0.2, first_chunk=0)
    with pytest.raises(TypeError):  # keyword-only: no positional calls
        pruned_aggregate(labels, forward, features, debiased, sim, ReferenceSide(refs, masks, proto), 0.2)
    assert math.isfinite(float(intra_bound(4)))


def _scene(xp, shots, grid=24, channels=64, seed=0):
    """Clustered synthetic features as the benchmark's (a target and `shots` noisy views of it,
    the same square masked in each): labels, features, proto, references, masks."""
    from insid3.kernels import average_linkage_clusters

    target = synthetic_patch_features(grid, grid, channels, centres=12, noise=0.6, seed=seed)
    refs = np.stack([synthetic_patch_features(grid, grid, channels, centres=12, noise=0.6, seed=seed, noise_seed=7 + s)
                     for s in range(shots)])
    masks = np.zeros((shots, grid, grid), dtype=bool)
    masks[:, grid // 3 : 2 * grid // 3, grid // 3 : 2 * grid // 3] = True
    masks = masks.reshape(shots, -1)
    proto = refs[:, masks[0]].mean(axis=(0, 1))
    proto = (proto / np.linalg.norm(proto)).astype(np.float32)
    labels = host(average_linkage_clusters(xp.asarray(target), 0.6))
    return labels, target, proto, refs, masks


def test_one_vote_call_when_the_first_cluster_is_the_seed(xp, monkeypatch):
    """The undecided clusters of the likeliest seed are voted with the walk's first chunk: when
    that cluster is the seed, one backward-vote call (one pass over the references) in all."""
    import insid3.kernels.pruned as pruned
    import insid3.kernels.pruned_ballot as ballot

    calls = []
    real = ballot._votes
    monkeypatch.setattr(ballot, "_votes", lambda *args: calls.append(int(args[1].shape[0])) or real(*args))
    more_than_the_chunk = 0
    for seed, shots, threshold in ((0, 1, 0.2), (1, 2, 0.2), (2, 3, 0.1), (3, 1, 0.3)):
        labels, target, proto, refs, masks = _scene(xp, shots, seed=seed)
        calls.clear()
        result, full, _, _ = _both(xp, labels, target, target, proto, refs, masks, threshold)
        assert full.any() and result.seed is not None
        assert calls == [result.voted_rows]  # one call, and the walk's first cluster was the seed
        more_than_the_chunk += result.voted_rows > pruned.FIRST_CHUNK
    assert more_than_the_chunk  # some undecided clusters' rows rode along with the first chunk
