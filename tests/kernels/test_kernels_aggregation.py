"""Doc §8: the per-cluster reductions, and seed and merging as pruned_aggregate computes them,
against the per-cluster loops of the oracle; and steps 4-9 end to end, composed as the engine
composes them, against the oracle's transcription."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import kernel_oracle as oracle
from support.kernel_oracle import host
from support.random_features import unit_rows

from insid3.benchmarks.synthetic import synthetic_basis, synthetic_patch_features
from insid3.kernels import (
    ReferenceSide,
    average_linkage_clusters,
    debias_frame,
    debiased_coordinates,
    downsample_mask,
    forward_candidates,
    forward_similarity,
    prototype,
    pruned_aggregate,
    upsample_mask,
)
from insid3.kernels.aggregation import (
    GROUP,
    area_weights,
    cluster_prototypes,
    mean_forward_similarity,
    segment_means,
    segment_sums,
)
from insid3.kernels.debias import debias


def _case(seed, n, k, c, density):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every cluster non-empty
    rng.shuffle(labels)
    features, debiased = unit_rows(rng, n, c), unit_rows(rng, n, c)
    proto = unit_rows(rng, c)
    sim = (debiased @ proto).astype(np.float32)
    candidate = rng.random(n) < density
    return labels.astype(np.int64), candidate, features, debiased, sim, proto


def _aggregate(xp, labels, candidate, features, debiased, sim, proto, threshold):
    """Doc §8 on exactly `candidate`, through pruned_aggregate: `candidate` as the forward patches
    and one reference patch, inside its mask, that every patch's vote then lands on (backward
    all true). Host arrays in; the result's mask and seed on the host."""
    one_patch = xp.ones((1, 1, debiased.shape[1]), dtype=xp.float32)
    reference = ReferenceSide(debiased=one_patch, patch_masks=xp.ones((1, 1), dtype=bool), prototype=xp.asarray(proto))
    labels_, candidate_, features_, debiased_, sim_ = (xp.asarray(a) for a in (labels, candidate, features, debiased, sim))
    result = pruned_aggregate(labels=labels_, forward=candidate_, features=features_, debiased=debiased_,
                              sim_fwd=sim_, reference=reference, merge_threshold=threshold)
    return host(result.patch_mask), result.seed


def test_cluster_reductions_match_loops(xp):
    labels, candidate, features, debiased, sim, proto = _case(0, 300, 40, 16, 0.3)
    k = 40
    areas = np.array([(labels == c).sum() for c in range(k)])
    cross = host(mean_forward_similarity(xp.asarray(labels), xp.asarray(sim), xp.asarray(areas)))
    np.testing.assert_allclose(cross, [sim[labels == c].mean() for c in range(k)], atol=1e-6)
    every = xp.arange(k)
    for values in (debiased, features):
        ours = host(cluster_prototypes(xp.asarray(values), xp.asarray(labels), every, k))
        np.testing.assert_allclose(ours, oracle.cluster_prototypes(values, labels, k), atol=1e-6)
    hits = np.array([(candidate & (labels == c)).sum() for c in range(k)])
    weights = host(area_weights(xp.asarray(hits), xp.asarray(areas)))
    np.testing.assert_array_equal(weights, hits.astype(np.float32) / areas.astype(np.float32))


def test_cross_sums_each_cluster_in_patch_order_on_every_device(xp):
    """cross_k: float64 sums in patch order, the bits of NumPy's sequential bincount(weights=)
    whatever the device (CuPy's own bincount adds with atomics, in no fixed order), run after run."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 4096)
    labels[:2000] = 2  # one large cluster: many additions whose order would show
    sim = rng.standard_normal(4096).astype(np.float32) * np.float32(1e-3) + np.float32(0.5)
    areas = np.bincount(labels, minlength=8)  # cluster 7 is empty
    sums = np.zeros(8)
    for label, value in zip(labels, sim.astype(np.float64)):  # one patch after the other
        sums[label] += value
    expected = (sums / np.maximum(areas, 1)).astype(np.float32)
    runs = [host(mean_forward_similarity(xp.asarray(labels), xp.asarray(sim), xp.asarray(areas))) for _ in range(3)]
    for cross in runs:
        np.testing.assert_array_equal(cross, expected)


def test_seed_is_the_oracles(xp):
    for seed in range(10):
        labels, candidate, features, debiased, sim, proto = _case(seed, 200, 30, 8, 0.2)
        matched = np.unique(labels[candidate])
        protos = oracle.cluster_prototypes(debiased, labels, 30)
        _, ours = _aggregate(xp, labels, candidate, features, debiased, sim, proto, 0.2)
        assert ours == matched[np.argmax(protos[matched] @ proto)]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 200), k_fraction=st.floats(0, 1), c=st.integers(2, 16), density=st.floats(0, 1),
    threshold=st.floats(-0.5, 0.8), seed=st.integers(0, 2**31),
)
def test_merge_matches_oracle(xp, n, k_fraction, c, density, threshold, seed):
    k = max(1, round(k_fraction * n))  # clusters from 1 to N
    labels, candidate, features, debiased, sim, proto = _case(seed, n, k, c, density)
    ours, _ = _aggregate(xp, labels, candidate, features, debiased, sim, proto, threshold)
    np.testing.assert_array_equal(ours, oracle.aggregate(labels, candidate, features, debiased, sim, proto, threshold))


def test_no_candidate_gives_empty_mask(xp):
    labels, _, features, debiased, sim, proto = _case(1, 100, 10, 8, 0.0)
    mask, seed = _aggregate(xp, labels, np.zeros(100, dtype=bool), features, debiased, sim, proto, -1.0)
    assert mask.shape == (100,) and not mask.any() and seed is None


def test_all_one_cluster_and_every_patch_own_cluster(xp):
    rng = np.random.default_rng(2)
    n = 150  # every patch its own cluster: ~90 matched clusters, the sort + cumsum path
    features, debiased, proto = unit_rows(rng, n, 8), unit_rows(rng, n, 8), unit_rows(rng, 8)
    sim = (debiased @ proto).astype(np.float32)
    candidate = rng.random(n) < 0.6
    for labels in (np.zeros(n, dtype=np.int64), np.arange(n)):
        for threshold in (-0.2, 0.0, 0.2):
            ours, _ = _aggregate(xp, labels, candidate, features, debiased, sim, proto, threshold)
            np.testing.assert_array_equal(ours, oracle.aggregate(labels, candidate, features, debiased, sim, proto, threshold))


@pytest.mark.parametrize("n_segments", [1, 51, 65, 300, 600])  # up to 3 levels of groups; 600: most segments of 0-1 rows
def test_segment_means(xp, n_segments):
    rng = np.random.default_rng(n_segments)
    values = rng.standard_normal((500, 7)).astype(np.float32)
    segments = rng.integers(0, n_segments, 500)
    segments[segments == n_segments // 2] = 0  # an empty segment in the middle (none if only 1)
    ours = host(segment_means(xp.asarray(values), xp.asarray(segments), n_segments))
    for s in range(n_segments):
        expected = values[segments == s].mean(axis=0) if (segments == s).any() else np.zeros(7)
        np.testing.assert_allclose(ours[s], expected, atol=1e-6)


def _pipeline(xp, target, refs, masks, basis, s, tau, threshold, resolution, original, grid, frame=False):
    """Steps 4-9 composed from the public kernels; frame=True as the engine calls them (debiased
    features in DebiasFrame coordinates), else with `debias` in the original coordinates."""
    h, w = grid
    if frame:
        debias_frame_ = debias_frame(xp.asarray(basis), s)
        t_deb = debiased_coordinates(xp.asarray(target), debias_frame_)
        r_deb = debiased_coordinates(xp.asarray(refs), debias_frame_)
    else:
        t_deb = debias(xp.asarray(target), xp.asarray(basis), s)
        r_deb = debias(xp.asarray(refs), xp.asarray(basis), s)
    down = xp.stack([downsample_mask(xp.asarray(m), grid).reshape(-1) for m in masks])
    proto = prototype(r_deb, down)
    sim = forward_similarity(t_deb, proto)
    forward = forward_candidates(sim)
    labels = average_linkage_clusters(xp.asarray(target), tau)
    patch_mask = pruned_aggregate(
        labels=labels, forward=forward, features=xp.asarray(target), debiased=t_deb, sim_fwd=sim,
        reference=ReferenceSide(debiased=r_deb, patch_masks=down, prototype=proto), merge_threshold=threshold,
    ).patch_mask
    return host(upsample_mask(patch_mask.reshape(h, w), resolution, original))


@pytest.mark.parametrize("s, frame", [(6, False), (6, True), (20, True), (30, True)])  # frame: Q (s >= C/3) or not
@pytest.mark.parametrize("shots, noise, threshold", [(1, 0.5, 0.2), (2, 0.6, 0.2), (3, 0.7, 0.1), (5, 0.6, 0.3), (1, 0.9, 0.2)])
def test_steps_4_to_9_equal_the_oracle(xp, shots, noise, threshold, s, frame):
    pytest.importorskip("torch", reason="the oracle resizes with torch")
    grid, channels, resolution, original = (16, 16), 48, 256, (200, 310)
    target = synthetic_patch_features(*grid, channels, centres=10, noise=noise, seed=0)
    refs = np.stack([synthetic_patch_features(*grid, channels, centres=10, noise=noise, seed=0 if i == 0 else 10 + i) for i in range(shots)])
    rng = np.random.default_rng(shots)
    masks = np.zeros((shots, resolution, resolution), dtype=bool)
    for i in range(shots):
        y, x = rng.integers(0, resolution - 96, 2)
        masks[i, y:y + 96, x:x + 80] = True
    basis = synthetic_basis(channels, 32, seed=1)
    args = (target, refs, masks, basis, s, 0.6, threshold, resolution, original, grid)
    ours = _pipeline(xp, *args, frame=frame)
    expected = oracle.segment(*args)
    assert ours.shape == original and ours.dtype == bool
    np.testing.assert_array_equal(ours, expected)


def test_segment_sums_of_a_segment_ignore_the_other_segments(xp):
    """A segment's sum is bit for bit the same whatever other segments are summed with it (the
    property `pruned_aggregate` relies on to equal §8 on every cluster), for every size up to a few
    levels of GROUP, and equals the float64 sum to float32 rounding."""
    rng = np.random.default_rng(9)
    values = rng.standard_normal((GROUP**3 + 40, 5)).astype(np.float32)
    sizes = [0, 1, 2, GROUP - 1, GROUP, GROUP + 1, GROUP**2, GROUP**2 + 3, GROUP**3 + 1]
    rows_of = {}
    for size in sizes:
        rows_of[size] = np.sort(rng.choice(values.shape[0], size, replace=False))
    def sums(selection):
        rows = np.concatenate([rows_of[size] for size in selection]).astype(np.int64)
        counts = np.array([len(rows_of[size]) for size in selection], dtype=np.int64)
        out = segment_sums(xp.asarray(values), xp.asarray(rows), xp.asarray(counts), int(counts.max()))
        return host(out)
    together = sums(sizes)
    for i, size in enumerate(sizes):
        alone = sums([size])
        np.testing.assert_array_equal(alone[0], together[i])
        np.testing.assert_array_equal(sums([sizes[-1], size, 1])[1], together[i])
        np.testing.assert_allclose(together[i], values[rows_of[size]].astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
