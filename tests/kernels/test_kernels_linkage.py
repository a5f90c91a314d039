"""Doc §7: average-linkage partitions equal to sklearn's, for every method, plus the pieces
(reciprocal merge twins, threshold edges of the chain, both chains, strict threshold)."""

import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import kernel_oracle as oracle
from support.kernel_oracle import host, same_partition
from support.random_features import unit_rows

from insid3.benchmarks.synthetic import synthetic_patch_features
from insid3.kernels import average_linkage_clusters
from insid3.kernels.arrays import KernelInputError
from insid3.kernels.linkage import cosine_distances, gram_matrix, gram_upper, resolve_method
from insid3.kernels.linkage_chain import chain_below, chain_linkage, threshold_edges
from insid3.kernels.linkage_dense_chain import condensed_gram_distances, dense_chain_below
from insid3.kernels.linkage_reciprocal import compact, float32_limit, merge_rows, reciprocal_linkage, rows_argmin

METHODS_FOR = {"numpy": ("chain", "reciprocal"), "cupy": ("reciprocal",)}


def _sklearn_on_distances(distances: np.ndarray, threshold: float) -> np.ndarray:
    return oracle.agglomerative_labels(distances, threshold)


def _check(xp, features, tau):
    expected = oracle.cluster(features, tau)
    for method in METHODS_FOR[xp.__name__]:
        labels = host(average_linkage_clusters(xp.asarray(features), tau, method=method))
        assert labels.dtype == np.int64 and labels.shape == (features.shape[0],)
        assert same_partition(labels, expected), f"{method}: {labels.max() + 1} vs {expected.max() + 1} clusters"
        assert labels.max() == expected.max()
        # canonical numbering: clusters appear in order of their first patch
        firsts = np.unique(labels, return_index=True)[1]
        assert np.all(np.diff(firsts) > 0) and labels[0] == 0
    return expected.max() + 1


@pytest.mark.parametrize("noise, side, channels", [
    (0.0, 16, 32), (0.4, 16, 64), (0.6, 24, 64), (0.7, 32, 96), (0.8, 32, 64), (1.0, 20, 48), (3.0, 16, 512),
])
def test_partition_equals_sklearn_on_patch_like_features(xp, noise, side, channels):
    features = synthetic_patch_features(side, side, channels, centres=12, noise=noise, seed=side)
    _check(xp, features, 0.6)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 90), c=st.integers(2, 24), tau=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_partition_equals_sklearn_random(xp, n, c, tau, seed):
    _check(xp, unit_rows(np.random.default_rng(seed), n, c), tau)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 60), threshold=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_cores_equal_sklearn_on_random_distance_matrices(xp, n, threshold, seed):
    """Not from features: an arbitrary symmetric "Gram" matrix (not positive semi-definite, a few
    entries below -1 for the clip), so distances, and merges, of every shape occur."""
    rng = np.random.default_rng(seed)
    upper = np.triu((1 - rng.random((n, n))).astype(np.float32), 1)
    upper[np.triu(rng.random((n, n)) < 0.05, 1)] = -1.5  # clipped: distance 2, never merged alone
    gram = upper + upper.T
    np.fill_diagonal(gram, 1)
    distances = np.float32(1) - np.clip(gram, -1, 1)  # what the chains compute from the Gram matrix
    expected = _sklearn_on_distances(distances, threshold)
    if xp is np:
        root, _ = chain_linkage(gram, threshold)
        assert same_partition(root, expected)
    root, _ = reciprocal_linkage(xp.asarray(distances), threshold)
    assert same_partition(host(root), expected)


def test_big_n_4096_equals_sklearn():
    features = synthetic_patch_features(64, 64, 48, centres=40, noise=0.55, seed=5)
    clusters = _check(np, features, 0.6)
    assert 10 <= clusters <= 1000


def test_threshold_is_strict():
    # d = 0.5 exactly is NOT merged (sklearn merges while distance < threshold), 0.25 is.
    distances = np.array([[0, 0.5, 1], [0.5, 0, 1], [1, 1, 0]], dtype=np.float32)
    assert len(set(_sklearn_on_distances(distances, 0.5))) == 3
    assert len(set(_sklearn_on_distances(distances, np.nextafter(0.5, 1)))) == 2
    gram = np.float32(1) - distances  # exact here: 1 - (1 - d) = d for d in {0, 0.5, 1}
    for core, matrix in ((reciprocal_linkage, distances), (chain_linkage, gram)):
        assert len(set(core(matrix.copy(), 0.5)[0].tolist())) == 3
        assert len(set(core(matrix.copy(), np.nextafter(0.5, 1))[0].tolist())) == 2


def test_float32_limit_matches_float64_comparison():
    rng = np.random.default_rng(0)
    for threshold in [0.4, 1 - 0.6, 0.1, 0.3333333333, 0.5, 0.7, 1e-3] + list(rng.random(50)):
        limit = float32_limit(threshold)
        near = np.nextafter(np.float32(threshold), np.float32(-1)) + np.arange(-3, 4, dtype=np.float32) * np.float32(1e-8)
        for d in np.concatenate([near, [np.float32(threshold), limit, np.nextafter(limit, np.float32(0))]]).astype(np.float32):
            assert (d < limit) == (float(d) < threshold)


def test_all_patches_one_cluster(xp):
    features = np.tile(unit_rows(np.random.default_rng(0), 1, 16), (50, 1))
    for method in METHODS_FOR[xp.__name__]:
        assert not host(average_linkage_clusters(xp.asarray(features), 0.6, method=method)).any()


def test_every_patch_its_own_cluster(xp):
    features = np.eye(40, 64, dtype=np.float32)  # orthogonal: every distance is 1
    for method in METHODS_FOR[xp.__name__]:
        assert host(average_linkage_clusters(xp.asarray(features), 0.6, method=method)).tolist() == list(range(40))
    assert reciprocal_linkage(cosine_distances(xp.asarray(features)), 0.4)[1] == 0  # no merge round


@pytest.mark.parametrize("cos, merged", [(0.9, True), (0.5, False)])
def test_two_patches(xp, cos, merged):
    features = np.array([[1, 0], [cos, np.sqrt(1 - cos * cos)]], dtype=np.float32)
    for method in METHODS_FOR[xp.__name__]:
        labels = host(average_linkage_clusters(xp.asarray(features), 0.6, method=method))
        assert labels.tolist() == ([0, 0] if merged else [0, 1])


def test_one_patch(xp):
    assert host(average_linkage_clusters(xp.ones((1, 4), dtype=xp.float32) / 2, 0.6)).tolist() == [0]


def test_methods_agree_and_auto_is_chain_on_numpy():
    features = synthetic_patch_features(16, 16, 32, centres=6, noise=0.5, seed=3)
    chain = average_linkage_clusters(features, 0.6, method="chain")
    np.testing.assert_array_equal(average_linkage_clusters(features, 0.6), chain)
    np.testing.assert_array_equal(average_linkage_clusters(features, 0.6, method="reciprocal"), chain)  # canonical
    _, rounds = reciprocal_linkage(cosine_distances(features), 0.4)
    assert rounds >= 1


def test_auto_resolves_by_array_module():
    cupy_like = types.SimpleNamespace(__name__="cupy")
    assert resolve_method("auto", np) == "chain" and resolve_method("reciprocal", np) == "reciprocal"
    assert resolve_method("auto", cupy_like) == "reciprocal"
    with pytest.raises(KernelInputError, match="method='chain' runs on the CPU and needs NumPy arrays"):
        resolve_method("chain", cupy_like)
    with pytest.raises(KernelInputError, match="method must be one of .*got 'components'"):
        resolve_method("components", np)


def test_threshold_edges_are_the_pairs_below_the_threshold():
    features = synthetic_patch_features(12, 12, 24, centres=5, noise=0.6, seed=4)
    gram = gram_upper(features)
    distances = 1 - np.clip(features @ features.T, -1, 1)
    first, second, complete = threshold_edges(gram, float32_limit(0.4), 10**6)
    assert complete and first.dtype == second.dtype == np.int32 and np.all(first < second)
    i, j = np.nonzero(np.triu(distances < float32_limit(0.4), 1))
    # the same pairs as the float32 distances the reference builds (row-major order)
    np.testing.assert_array_equal(first, i)
    np.testing.assert_array_equal(second, j)
    # more pairs than allowed: stop and say so (the dense chain takes over)
    first, second, complete = threshold_edges(gram, float32_limit(0.4), i.size - 1)
    assert not complete and first.size == second.size == 0


def test_chain_counts_merges_and_sums_each_pair_at_most_once():
    features = synthetic_patch_features(20, 20, 32, centres=8, noise=0.6, seed=6)
    gram = gram_upper(features)
    first, second, _ = threshold_edges(gram, float32_limit(0.4), 10**6)
    n = features.shape[0]
    root, merges, pairs_summed = chain_below(gram, 0.4, first, second, np.empty(n * (n - 1) // 2))
    expected = oracle.cluster(features, 0.6)
    assert same_partition(root, expected)
    assert merges == n - (expected.max() + 1)  # one merge per patch joining a cluster
    assert pairs_summed <= n * (n - 1) // 2 - first.shape[0]  # only non-edge pairs, once each
    assert np.all(root <= np.arange(n)) and np.all(root[root] == root)  # smallest index of its cluster


def test_chain_dense_graph_and_pool_growth():
    """tau close to 0: nearly every pair is an edge. chain_linkage hands that to the dense chain;
    the sparse chain still gives the same partition, its merged lists outgrowing the pool."""
    features = unit_rows(np.random.default_rng(3), 300, 8)
    gram = gram_upper(features)
    n = features.shape[0]
    for tau in (0.02, 0.2):
        expected = oracle.cluster(features, tau)
        root, edges = chain_linkage(gram, 1 - tau)
        assert edges == -1 and same_partition(root, expected)  # -1: the dense chain ran
        first, second, complete = threshold_edges(gram, float32_limit(1 - tau), n * n)
        assert complete and first.size > 0.3 * n * (n - 1) / 2
        sparse, _, _ = chain_below(gram, 1 - tau, first, second, np.empty(n * (n - 1) // 2))
        np.testing.assert_array_equal(sparse, root)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_and_dense_chains_agree_across_densities(seed):
    rng = np.random.default_rng(seed)
    features = synthetic_patch_features(14, 14, 16, centres=int(rng.integers(2, 12)), noise=float(rng.uniform(0.2, 1.2)), seed=seed)
    gram = gram_upper(features)
    n = features.shape[0]
    for tau in (0.2, 0.5, 0.6, 0.8, 0.95):
        threshold = 1 - tau
        first, second, _ = threshold_edges(gram, float32_limit(threshold), n * n)
        sparse, _, _ = chain_below(gram, threshold, first, second, np.empty(n * (n - 1) // 2))
        condensed = np.empty(n * (n - 1) // 2)
        condensed_gram_distances(gram, condensed)
        np.testing.assert_array_equal(condensed, squareform_upper(features))
        dense = dense_chain_below(condensed, n, threshold)
        np.testing.assert_array_equal(sparse, dense)
        assert same_partition(dense, oracle.cluster(features, tau))


def squareform_upper(features):
    """The float32 distances the reference builds, in scipy's condensed order, as float64."""
    distances = 1 - np.clip(features @ features.T, -1, 1)
    return distances[np.triu_indices(features.shape[0], 1)].astype(np.float64)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 150])
def test_gram_matrix_is_numpys_product_and_symmetric(xp, n):
    features = unit_rows(np.random.default_rng(n), n, 24)
    ours = host(gram_matrix(xp.asarray(features)))
    assert ours.dtype == np.float32 and ours.shape == (n, n)
    np.testing.assert_array_equal(ours, ours.T)
    np.testing.assert_allclose(ours, features @ features.T, atol=1e-6)
    if xp is np and n > 2:  # the same BLAS sums as NumPy's own F @ F.T (tiny n: NumPy uses dot)
        np.testing.assert_array_equal(ours, features @ features.T)


def _merge_rows_by_formula(distances, first, second, sizes):
    """One float32 operation at a time, in the documented order (the CUDA kernel's contract)."""
    f32 = np.float32
    pairs, n = len(first), distances.shape[0]
    role = {int(i): p for p, i in enumerate(first)}
    absorbed = {int(j) for j in second}

    def average(na, da, nb, db, total):
        return f32(f32(f32(na * da) + f32(nb * db)) / total)

    out = np.empty((pairs, n), dtype=np.float32)
    for p in range(pairs):
        i, j = int(first[p]), int(second[p])
        for m in range(n):
            if m in absorbed:
                out[p, m] = np.inf
            elif m in role:
                q = role[m]
                if q == p:
                    out[p, m] = np.inf
                    continue
                a, b = (p, q) if first[p] < first[q] else (q, p)
                ia, ja, kb, lb = int(first[a]), int(second[a]), int(first[b]), int(second[b])
                ta, tb = f32(sizes[ia] + sizes[ja]), f32(sizes[kb] + sizes[lb])
                x = average(sizes[ia], distances[ia, kb], sizes[ja], distances[ja, kb], ta)
                y = average(sizes[ia], distances[ia, lb], sizes[ja], distances[ja, lb], ta)
                out[p, m] = average(sizes[kb], x, sizes[lb], y, tb)
            else:
                out[p, m] = average(sizes[i], distances[i, m], sizes[j], distances[j, m], f32(sizes[i] + sizes[j]))
    return out


def _random_round(seed, n=30, pairs=6):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)).astype(np.float32), 1)
    distances = upper + upper.T
    np.fill_diagonal(distances, np.inf)
    chosen = rng.choice(n, 2 * pairs, replace=False)
    first, second = np.minimum(chosen[:pairs], chosen[pairs:]), np.maximum(chosen[:pairs], chosen[pairs:])
    order = np.argsort(first)
    sizes = rng.integers(1, 50, n).astype(np.float32)
    return distances, first[order].astype(np.int64), second[order].astype(np.int64), sizes


@pytest.mark.parametrize("seed", range(5))
def test_merge_rows_twin_is_bit_exact_to_the_formula(seed):
    distances, first, second, sizes = _random_round(seed)
    ours = merge_rows(distances, first, second, sizes)
    np.testing.assert_array_equal(ours, _merge_rows_by_formula(distances, first, second, sizes))
    # merged-to-merged entries are the same from both sides
    block = ours[:, first]
    np.testing.assert_array_equal(block, block.T)


def test_compact_equals_symmetric_update_then_selection():
    distances, first, second, sizes = _random_round(3)
    rows = merge_rows(distances, first, second, sizes)
    expected = distances.copy()
    expected[first] = rows
    expected[:, first] = rows.T
    keep = np.ones(distances.shape[0], dtype=bool)
    keep[second] = False
    keep[[i for i in range(distances.shape[0]) if i not in set(first) | set(second)][:4]] = False  # frozen
    kept = np.flatnonzero(keep)
    new_position = np.full(distances.shape[0], -1)
    new_position[kept] = np.arange(kept.shape[0])
    np.testing.assert_array_equal(compact(distances, kept, new_position, first, rows), expected[np.ix_(kept, kept)])


def test_rows_argmin_twin():
    rng = np.random.default_rng(0)
    distances = rng.integers(0, 4, (20, 30)).astype(np.float32)  # many ties
    distances[3] = np.inf
    rows = np.array([0, 3, 7, 19])
    nearest, nearest_distance = np.full(20, -1), np.full(20, -1.0, dtype=np.float32)
    rows_argmin(distances, rows, nearest, nearest_distance)
    for r in rows:
        first_min = min(range(30), key=lambda m: (distances[r, m], m))
        assert nearest[r] == first_min and nearest_distance[r] == distances[r, first_min]
    assert (nearest[np.setdiff1d(np.arange(20), rows)] == -1).all()


def test_cuda_kernels_equal_twins(xp):
    if xp.__name__ != "cupy":
        pytest.skip("CUDA kernels: needs CuPy arrays")
    from insid3.kernels.cuda import linkage_kernels

    kernels = linkage_kernels()
    assert kernels is not None, "NVRTC could not build linkage_reciprocal.cu"
    distances, first, second, sizes = _random_round(1, n=300, pairs=40)
    rows = kernels.merge_rows(xp.asarray(distances), xp.asarray(first), xp.asarray(second), xp.asarray(sizes))
    np.testing.assert_array_equal(host(rows), merge_rows(distances, first, second, sizes))
    picked = np.array([0, 5, 17, 299])
    expected_n, expected_d = np.zeros(300, np.int64), np.zeros(300, np.float32)
    rows_argmin(distances, picked, expected_n, expected_d)
    got_n, got_d = xp.zeros(300, dtype=xp.int64), xp.zeros(300, dtype=xp.float32)
    kernels.rows_argmin(xp.asarray(distances), xp.asarray(picked), got_n, got_d)
    np.testing.assert_array_equal(host(got_n), expected_n)
    np.testing.assert_array_equal(host(got_d), expected_d)
    features = synthetic_patch_features(24, 24, 32, noise=0.6, seed=2)
    with_kernels = average_linkage_clusters(xp.asarray(features), 0.6, method="reciprocal", use_cuda_kernels=True)
    composed = average_linkage_clusters(xp.asarray(features), 0.6, method="reciprocal", use_cuda_kernels=False)
    np.testing.assert_array_equal(host(with_kernels), host(composed))


def test_bad_inputs(xp):
    f = xp.ones((4, 3), dtype=xp.float32)
    with pytest.raises(KernelInputError, match="method must be one of"):
        average_linkage_clusters(f, 0.6, method="single")
    with pytest.raises(KernelInputError, match=r"tau=1.5 must be in \(0, 1\]"):
        average_linkage_clusters(f, 1.5)
    with pytest.raises(KernelInputError, match=r"average_linkage_clusters: features must be 2-D, got shape \(4,\)"):
        average_linkage_clusters(xp.ones(4, dtype=xp.float32), 0.6)
    with pytest.raises(KernelInputError, match="features must be float32, got shape \\(4, 3\\) dtype float64"):
        average_linkage_clusters(xp.ones((4, 3)), 0.6)
    with pytest.raises(KernelInputError, match=r"features has no rows"):
        average_linkage_clusters(xp.ones((0, 3), dtype=xp.float32), 0.6)
    if xp.__name__ == "cupy":
        with pytest.raises(KernelInputError, match="needs NumPy arrays"):
            average_linkage_clusters(f, 0.6, method="chain")


def test_chain_reuses_its_sums_buffer_without_reading_stale_values():
    from insid3.kernels._chain_common import sums_buffer

    features = synthetic_patch_features(16, 16, 24, centres=6, noise=0.6, seed=9)
    expected = average_linkage_clusters(features, 0.6, method="chain")
    n = features.shape[0]
    buffer = sums_buffer(n * (n - 1) // 2)
    buffer[:] = np.nan  # whatever a previous image left there must never be read
    assert sums_buffer(n * (n - 1) // 2).base is buffer.base
    np.testing.assert_array_equal(average_linkage_clusters(features, 0.6, method="chain"), expected)
    assert same_partition(expected, oracle.cluster(features, 0.6))
