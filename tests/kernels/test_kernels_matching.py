"""Doc §4-§6: debias, prototype, forward and backward candidates against the oracle."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import kernel_oracle as oracle
from support.kernel_oracle import host
from support.random_features import unit_rows

from insid3.benchmarks.synthetic import synthetic_basis, synthetic_patch_features
from insid3.errors import ReferenceMaskError
from insid3.kernels import (
    array_module,
    debias_frame,
    debiased_coordinates,
    forward_candidates,
    forward_similarity,
    prototype,
)
from insid3.kernels.arrays import KernelInputError
from insid3.kernels.debias import debias
from insid3.kernels.matching import VOTE_BLOCK, backward_candidates, backward_votes, torch_quantile


def test_array_module_and_mixing():
    assert array_module(np.zeros(2)) is np
    assert array_module() is np
    with pytest.raises(KernelInputError, match="numpy.ndarray or cupy.ndarray, got list"):
        array_module([1, 2])


@pytest.mark.parametrize("s", [0, 1, 7, 16])
def test_debias_matches_projector_form(xp, s):
    rng = np.random.default_rng(s)
    features = unit_rows(rng, 3, 50, 32)  # any leading shape
    basis = synthetic_basis(32, 31, seed=s)
    ours = host(debias(xp.asarray(features), xp.asarray(basis), s))
    assert ours.dtype == np.float32 and ours.shape == features.shape
    np.testing.assert_allclose(ours, oracle.debias(features, basis, s), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("s, complement", [(0, False), (10, False), (11, True), (20, True), (28, True)])
def test_debiased_coordinates_keep_every_dot_product(xp, s, complement):
    """Frame coordinates are debias() in an orthonormal basis of span(B)^perp: the same norms and
    dot products (forward, backward and prototype similarities), D = C - s wide when s >= C / 3."""
    rng = np.random.default_rng(s)
    features = unit_rows(rng, 2, 40, 32)
    basis = synthetic_basis(32, 31, seed=s)
    frame = debias_frame(xp.asarray(basis), s)
    assert (frame.complement is not None) == complement and frame.svd_components == s
    assert frame.width == (32 - s if complement else 32)
    ours = host(debiased_coordinates(xp.asarray(features), frame))
    assert ours.dtype == np.float32 and ours.shape == (2, 40, frame.width)
    expected = oracle.debias(features, basis, s)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(ours[0] @ ours[1].T, expected[0] @ expected[1].T, atol=2e-6)
    np.testing.assert_allclose(ours[0] @ ours[0].T, expected[0] @ expected[0].T, atol=2e-6)
    if complement:  # Q^T maps back: Q (Q^T F~) = F~
        np.testing.assert_allclose(ours @ host(frame.complement).T, expected, atol=2e-6)


def test_debias_frame_bad_inputs(xp):
    basis = xp.asarray(synthetic_basis(8, 4))
    with pytest.raises(KernelInputError, match=r"debias_frame: svd_components=5 must be in \[0, min\(K=4, C=8 - 1\)\]"):
        debias_frame(basis, 5)
    with pytest.raises(KernelInputError, match="debiased_coordinates: features have C = 6 .* built for C = 8"):
        debiased_coordinates(xp.zeros((3, 6), dtype=xp.float32), debias_frame(basis, 3))


def test_debias_zero_components_only_renormalises(xp):
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((10, 8)).astype(np.float32)
    ours = host(debias(xp.asarray(raw), xp.asarray(synthetic_basis(8, 4)), 0))
    np.testing.assert_allclose(ours, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_debias_bad_inputs(xp):
    f = xp.zeros((4, 8), dtype=xp.float32)
    with pytest.raises(KernelInputError, match=r"debias: basis has shape \(6, 2\) but features have C = 8"):
        debias(f, xp.zeros((6, 2), dtype=xp.float32), 1)
    with pytest.raises(KernelInputError, match=r"svd_components=3 must be in \[0, min\(K=2, C=8 - 1\)\]"):
        debias(f, xp.zeros((8, 2), dtype=xp.float32), 3)
    with pytest.raises(KernelInputError, match="debias: features must be float32, got shape \\(4, 8\\) dtype float64"):
        debias(xp.zeros((4, 8)), xp.zeros((8, 2), dtype=xp.float32), 1)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shots=st.integers(1, 5), patches=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_prototype_matches_oracle(xp, shots, patches, seed):
    rng = np.random.default_rng(seed)
    feats = unit_rows(rng, shots, patches, 16)
    masks = rng.random((shots, patches)) < 0.4
    masks[rng.integers(shots), rng.integers(patches)] = True  # at least one foreground patch
    np.testing.assert_allclose(host(prototype(xp.asarray(feats), xp.asarray(masks))), oracle.prototype(feats, masks), atol=1e-5)


def test_prototype_skips_empty_shots_and_rejects_all_empty(xp):
    rng = np.random.default_rng(0)
    feats = unit_rows(rng, 3, 20, 8)
    masks = np.zeros((3, 20), dtype=bool)
    masks[1, :5] = True
    ours = host(prototype(xp.asarray(feats), xp.asarray(masks)))
    np.testing.assert_allclose(ours, oracle.normalize(feats[1, :5].mean(axis=0)), atol=1e-6)
    with pytest.raises(ReferenceMaskError, match="every reference shot"):
        prototype(xp.asarray(feats), xp.zeros((3, 20), dtype=bool))
    with pytest.raises(KernelInputError, match=r"prototype: shot_masks must have shape \(3, 20\), got shape \(3, 19\)"):
        prototype(xp.asarray(feats), xp.zeros((3, 19), dtype=bool))


def test_forward_similarity_and_candidates(xp):
    rng = np.random.default_rng(1)
    target = unit_rows(rng, 200, 16)
    proto = unit_rows(rng, 16)
    sim = forward_similarity(xp.asarray(target), xp.asarray(proto))
    expected_sim, expected_mask = oracle.forward(target, proto)
    np.testing.assert_allclose(host(sim), expected_sim, atol=1e-6)
    np.testing.assert_array_equal(host(forward_candidates(sim)), expected_mask)
    assert 0 < expected_mask.sum() < 200


@pytest.mark.parametrize("n", [1, 2, 7, 10, 11, 100, 2304, 4096])
def test_forward_quantile_fallback_matches_torch(xp, n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n)
    sim = -np.abs(rng.standard_normal(n).astype(np.float32))  # nothing > 0
    q = float(torch.quantile(torch.from_numpy(sim), 0.9))
    assert float(host(torch_quantile(xp.asarray(sim), 0.9))) == q
    ours = host(forward_candidates(xp.asarray(sim)))
    np.testing.assert_array_equal(ours, sim > q)
    assert ours.sum() == (sim > q).sum()


def test_torch_quantile_bit_exact_on_many_sizes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for _ in range(300):
        values = (rng.standard_normal(int(rng.integers(1, 3000))) * rng.uniform(1e-3, 10)).astype(np.float32)
        assert float(torch_quantile(values, 0.9)) == float(torch.quantile(torch.from_numpy(values), 0.9))


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shots=st.integers(1, 5), n=st.integers(2, 60), nr=st.integers(1, 60), seed=st.integers(0, 10_000))
def test_backward_matches_oracle(xp, shots, n, nr, seed):
    rng = np.random.default_rng(seed)
    target, refs = unit_rows(rng, n, 12), unit_rows(rng, shots, nr, 12)
    masks = rng.random((shots, nr)) < 0.5
    votes = backward_votes(xp.asarray(target), xp.asarray(refs), xp.asarray(masks))
    assert votes.dtype == np.int32 and votes.shape == (n,)
    np.testing.assert_array_equal(host(backward_candidates(votes, shots)), oracle.backward(target, refs, masks))


def test_backward_ties_take_the_first_reference_patch(xp):
    # Reference patches 0 and 1 are identical: every target patch ties between them, and the
    # first index (patch 0, outside the mask) must win, as torch.argmax.
    target = np.eye(4, dtype=np.float32)[:1]
    refs = np.stack([np.eye(4, dtype=np.float32)[[0, 0, 1]]])
    masks = np.array([[False, True, True]])
    assert host(backward_votes(xp.asarray(target), xp.asarray(refs), xp.asarray(masks))).tolist() == [0]
    masks = np.array([[True, False, False]])
    assert host(backward_votes(xp.asarray(target), xp.asarray(refs), xp.asarray(masks))).tolist() == [1]


def test_backward_votes_of_some_rows_equal_those_of_all_rows(xp):
    """A row's vote does not depend on the rows voted with it (pruned_aggregate votes a few rows
    at a time): any subset, a single row (not a GEMV), and more rows than one VOTE_BLOCK."""
    rng = np.random.default_rng(4)
    n = VOTE_BLOCK + 50
    target, refs = unit_rows(rng, n, 8), unit_rows(rng, 3, 30, 8)
    masks = rng.random((3, 30)) < 0.5
    full = host(backward_votes(xp.asarray(target), xp.asarray(refs), xp.asarray(masks)))
    for rows in (np.flatnonzero(rng.random(n) < 0.5), np.array([7]), np.array([n - 1, 0]), np.arange(n)[::-1]):
        part = host(backward_votes(xp.asarray(target[rows]), xp.asarray(refs), xp.asarray(masks)))
        np.testing.assert_array_equal(part, full[rows])


@pytest.mark.parametrize("shots", [1, 2, 3, 4, 5])
def test_backward_majority(xp, shots):
    votes = xp.arange(shots + 1, dtype=xp.int32)
    assert host(backward_candidates(votes, shots)).tolist() == [v >= math.ceil(shots / 2) for v in range(shots + 1)]


def test_backward_bad_inputs(xp):
    t = xp.zeros((5, 8), dtype=xp.float32)
    with pytest.raises(KernelInputError, match=r"backward_votes: reference_debiased must have shape \(\*, \*, 8\), got shape \(2, 3, 7\)"):
        backward_votes(t, xp.zeros((2, 3, 7), dtype=xp.float32), xp.zeros((2, 3), dtype=bool))
    with pytest.raises(KernelInputError, match=r"reference_masks must have shape \(2, 3\)"):
        backward_votes(t, xp.zeros((2, 3, 8), dtype=xp.float32), xp.zeros((3, 2), dtype=bool))
    with pytest.raises(KernelInputError, match="shots must be >= 1"):
        backward_candidates(xp.zeros(3, dtype=xp.int32), 0)


def test_matching_on_realistic_features(xp):
    """Synthetic ViT-like features: forward, backward and prototype as the oracle, 3 shots."""
    target = synthetic_patch_features(24, 24, 64, seed=1)
    refs = np.stack([synthetic_patch_features(24, 24, 64, seed=s) for s in (1, 2, 3)])
    masks = np.stack([np.arange(576) % 24 < 10 for _ in range(3)])
    basis = synthetic_basis(64, 8)
    t_deb = debias(xp.asarray(target), xp.asarray(basis), 4)
    r_deb = debias(xp.asarray(refs), xp.asarray(basis), 4)
    proto = prototype(r_deb, xp.asarray(masks))
    sim = forward_similarity(t_deb, proto)
    candidate = forward_candidates(sim) & backward_candidates(backward_votes(t_deb, r_deb, xp.asarray(masks)), 3)
    o_t = oracle.debias(target, basis, 4).astype(np.float32)
    o_r = oracle.debias(refs, basis, 4).astype(np.float32)
    o_p = oracle.prototype(o_r, masks).astype(np.float32)
    _, o_fwd = oracle.forward(o_t, o_p)
    np.testing.assert_array_equal(host(candidate), o_fwd & oracle.backward(o_t, o_r, masks))
