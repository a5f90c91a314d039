"""Doc §7: average-linkage partitions equal to sklearn's, for every method, plus the pieces
(reciprocal merge twins, component search, threshold edges of the chain, strict threshold)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sklearn.cluster import AgglomerativeClustering

import kernel_oracle as oracle
from kernel_oracle import host, same_partition, xp  # noqa: F401  (xp is a fixture)
from insid3.kernels import KernelInputError, average_linkage, average_linkage_clusters
from insid3.kernels import linkage
from insid3.kernels.linkage import gram_matrix, gram_upper
from insid3.kernels.linkage_chain import chain_below, chain_linkage, threshold_edges
from insid3.kernels.linkage_components import component_linkage, condensed_distances, cut_below, graph_components
from insid3.kernels.linkage_reciprocal import compact, float32_limit, merge_rows, reciprocal_linkage, rows_argmin
from insid3.kernels.synthetic import synthetic_patch_features

METHODS_FOR = {"numpy": ("chain", "components", "reciprocal"), "cupy": ("reciprocal",)}


def _sklearn_on_distances(distances: np.ndarray, threshold: float) -> np.ndarray:
    return AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
    ).fit_predict(distances)


def _unit(rng, n, c):
    x = rng.standard_normal((n, c)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check(xp, features, tau):
    expected = oracle.cluster(features, tau)
    for method in METHODS_FOR[xp.__name__]:
        result = average_linkage(xp.asarray(features), tau, method=method)
        labels = host(result.labels)
        assert labels.dtype == np.int64 and labels.shape == (features.shape[0],)
        assert same_partition(labels, expected), f"{method}: {result.n_clusters} vs {expected.max() + 1} clusters"
        assert result.n_clusters == expected.max() + 1
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
    _check(xp, _unit(np.random.default_rng(seed), n, c), tau)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 60), threshold=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_cores_equal_sklearn_on_random_distance_matrices(xp, n, threshold, seed):
    """Not from features: arbitrary symmetric distances, so merges of every shape occur."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)).astype(np.float32), 1)
    distances = upper + upper.T
    expected = _sklearn_on_distances(distances, threshold)
    if xp is np:
        root, _ = component_linkage(distances.copy(), threshold)
        assert same_partition(root, expected)
        root, _ = chain_linkage(distances, threshold, from_gram=False)
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
    def chain(d, t):
        return chain_linkage(d, t, from_gram=False)

    for core in (component_linkage, reciprocal_linkage, chain):
        assert len(set(core(distances.copy(), 0.5)[0].tolist())) == 3
        assert len(set(core(distances.copy(), np.nextafter(0.5, 1))[0].tolist())) == 2


def test_float32_limit_matches_float64_comparison():
    rng = np.random.default_rng(0)
    for threshold in [0.4, 1 - 0.6, 0.1, 0.3333333333, 0.5, 0.7, 1e-3] + list(rng.random(50)):
        limit = float32_limit(threshold)
        near = np.nextafter(np.float32(threshold), np.float32(-1)) + np.arange(-3, 4, dtype=np.float32) * np.float32(1e-8)
        for d in np.concatenate([near, [np.float32(threshold), limit, np.nextafter(limit, np.float32(0))]]).astype(np.float32):
            assert (d < limit) == (float(d) < threshold)


def test_all_patches_one_cluster(xp):
    features = np.tile(_unit(np.random.default_rng(0), 1, 16), (50, 1))
    for method in METHODS_FOR[xp.__name__]:
        result = average_linkage(xp.asarray(features), 0.6, method=method)
        assert result.n_clusters == 1 and not host(result.labels).any()


def test_every_patch_its_own_cluster(xp):
    features = np.eye(40, 64, dtype=np.float32)  # orthogonal: every distance is 1
    for method in METHODS_FOR[xp.__name__]:
        result = average_linkage(xp.asarray(features), 0.6, method=method)
        assert result.n_clusters == 40 and host(result.labels).tolist() == list(range(40))
        assert result.rounds == 0


@pytest.mark.parametrize("cos, merged", [(0.9, True), (0.5, False)])
def test_two_patches(xp, cos, merged):
    features = np.array([[1, 0], [cos, np.sqrt(1 - cos * cos)]], dtype=np.float32)
    for method in METHODS_FOR[xp.__name__]:
        labels = host(average_linkage_clusters(xp.asarray(features), 0.6, method=method))
        assert labels.tolist() == ([0, 0] if merged else [0, 1])


def test_one_patch(xp):
    assert host(average_linkage_clusters(xp.ones((1, 4), dtype=xp.float32) / 2, 0.6)).tolist() == [0]


def test_result_info():
    features = synthetic_patch_features(16, 16, 32, centres=6, noise=0.5, seed=3)
    rec = average_linkage(features, 0.6, method="reciprocal")
    comp = average_linkage(features, 0.6, method="components")
    chain = average_linkage(features, 0.6, method="chain")
    auto = average_linkage(features, 0.6)
    assert rec.method == "reciprocal" and rec.rounds >= 1 and rec.components == 0
    assert comp.method == "components" and comp.rounds == 0
    assert chain.method == auto.method == "chain" and chain.rounds == chain.components == 0
    assert 1 <= comp.components <= comp.n_clusters
    assert same_partition(rec.labels, comp.labels)
    np.testing.assert_array_equal(chain.labels, comp.labels)  # both canonical


def test_auto_falls_back_to_components_without_numba(monkeypatch):
    monkeypatch.setattr(linkage, "numba_available", lambda: False)
    features = synthetic_patch_features(8, 8, 16, centres=3, noise=0.5, seed=1)
    assert average_linkage(features, 0.6).method == "components"
    with pytest.raises(KernelInputError, match="method='chain' needs numba"):
        average_linkage(features, 0.6, method="chain")


def test_threshold_edges_are_the_pairs_below_the_threshold_from_gram_or_distances():
    features = synthetic_patch_features(12, 12, 24, centres=5, noise=0.6, seed=4)
    gram = gram_upper(features)
    distances = 1 - np.clip(features @ features.T, -1, 1)
    for matrix, from_gram in ((gram, True), (np.triu(distances, 1), False)):
        first, second, complete = threshold_edges(np.ascontiguousarray(matrix), from_gram, float32_limit(0.4), 10**6)
        assert complete and first.dtype == second.dtype == np.int32 and np.all(first < second)
        i, j = np.nonzero(np.triu(distances < float32_limit(0.4), 1))
        # the same pairs as the float32 distances the reference builds (row-major order)
        np.testing.assert_array_equal(first, i)
        np.testing.assert_array_equal(second, j)
        # more pairs than allowed: stop and say so (the dense chain takes over)
        first, second, complete = threshold_edges(np.ascontiguousarray(matrix), from_gram, float32_limit(0.4), i.size - 1)
        assert not complete and first.size == second.size == 0


def test_chain_counts_merges_and_sums_each_pair_at_most_once():
    features = synthetic_patch_features(20, 20, 32, centres=8, noise=0.6, seed=6)
    gram = gram_upper(features)
    first, second, _ = threshold_edges(gram, True, float32_limit(0.4), 10**6)
    n = features.shape[0]
    root, merges, pairs_summed = chain_below(gram, True, 0.4, first, second, np.empty(n * (n - 1) // 2))
    expected = oracle.cluster(features, 0.6)
    assert same_partition(root, expected)
    assert merges == n - (expected.max() + 1)  # one merge per patch joining a cluster
    assert pairs_summed <= n * (n - 1) // 2 - first.shape[0]  # only non-edge pairs, once each
    assert np.all(root <= np.arange(n)) and np.all(root[root] == root)  # smallest index of its cluster


def test_chain_dense_graph_and_pool_growth():
    """tau close to 0: nearly every pair is an edge. chain_linkage hands that to the dense chain;
    the sparse chain still gives the same partition, its merged lists outgrowing the pool."""
    features = _unit(np.random.default_rng(3), 300, 8)
    gram = gram_upper(features)
    n = features.shape[0]
    for tau in (0.02, 0.2):
        expected = oracle.cluster(features, tau)
        root, edges = chain_linkage(gram, 1 - tau, from_gram=True)
        assert edges == -1 and same_partition(root, expected)  # -1: the dense chain ran
        first, second, complete = threshold_edges(gram, True, float32_limit(1 - tau), n * n)
        assert complete and first.size > 0.3 * n * (n - 1) / 2
        sparse, _, _ = chain_below(gram, True, 1 - tau, first, second, np.empty(n * (n - 1) // 2))
        np.testing.assert_array_equal(sparse, root)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_and_dense_chains_agree_across_densities(seed):
    from insid3.kernels.linkage_dense_chain import condensed_distances, dense_chain_below

    rng = np.random.default_rng(seed)
    features = synthetic_patch_features(14, 14, 16, centres=int(rng.integers(2, 12)), noise=float(rng.uniform(0.2, 1.2)), seed=seed)
    gram = gram_upper(features)
    n = features.shape[0]
    for tau in (0.2, 0.5, 0.6, 0.8, 0.95):
        threshold = 1 - tau
        first, second, _ = threshold_edges(gram, True, float32_limit(threshold), n * n)
        sparse, _, _ = chain_below(gram, True, threshold, first, second, np.empty(n * (n - 1) // 2))
        condensed = np.empty(n * (n - 1) // 2)
        condensed_distances(gram, True, condensed)
        np.testing.assert_array_equal(condensed, squareform_upper(features))
        dense = dense_chain_below(condensed, n, threshold)
        np.testing.assert_array_equal(sparse, dense)
        assert same_partition(dense, oracle.cluster(features, tau))


def squareform_upper(features):
    """The float32 distances the reference builds, in scipy's condensed order, as float64."""
    distances = 1 - np.clip(features @ features.T, -1, 1)
    return distances[np.triu_indices(features.shape[0], 1)].astype(np.float64)


def test_graph_components_match_scipy():
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(0)
    for density in [0.0, 0.005, 0.02, 0.1, 1.0]:
        upper = np.triu(rng.random((150, 150)) < density, 1)
        adjacency = upper | upper.T
        expected_count, expected = connected_components(adjacency, directed=False)
        for self_loops in (False, True):  # the diagonal is ignored, set or not
            np.fill_diagonal(adjacency, self_loops)
            ours, count = graph_components(adjacency)
            assert count == expected_count and same_partition(ours, expected)


@pytest.mark.parametrize("members", [
    np.arange(40), np.arange(7, 19), np.array([5, 6]), np.array([7]),  # one run of slices
    np.delete(np.arange(40), [5, 21]), np.array([2, 3, 4, 10, 11, 12, 13, 30]),  # a few runs: slices
    np.array([0, 3, 4, 9, 30, 39]),  # five runs: one gather per row
])
def test_condensed_distances_equal_squareform(members):
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(0)
    upper = np.triu(rng.random((40, 40)).astype(np.float32), 1)
    distances = upper + upper.T
    expected = squareform(distances[np.ix_(members, members)], checks=False).astype(np.float64)
    ours = condensed_distances(distances, members)
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 150])
def test_gram_matrix_is_numpys_product_and_symmetric(xp, n):
    features = _unit(np.random.default_rng(n), n, 24)
    ours = host(gram_matrix(xp.asarray(features)))
    assert ours.dtype == np.float32 and ours.shape == (n, n)
    np.testing.assert_array_equal(ours, ours.T)
    np.testing.assert_allclose(ours, features @ features.T, atol=1e-6)
    if xp is np and n > 2:  # the same BLAS sums as NumPy's own F @ F.T (tiny n: NumPy uses dot)
        np.testing.assert_array_equal(ours, features @ features.T)


def test_cut_below_keeps_merges_strictly_below():
    from scipy.cluster.hierarchy import linkage

    rng = np.random.default_rng(1)
    condensed = rng.random(20 * 19 // 2)
    merges = linkage(condensed, method="average")
    for threshold in [0.0, merges[5, 2], merges[10, 2], np.nextafter(merges[10, 2], 2), 2.0]:
        root = cut_below(merges, 20, threshold)
        assert len(np.unique(root)) == 20 - int((merges[:, 2] < threshold).sum())
        assert all(root[i] <= i for i in range(20))  # roots are the smallest member


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
    with_kernels = average_linkage(xp.asarray(features), 0.6, method="reciprocal", use_cuda_kernels=True)
    composed = average_linkage(xp.asarray(features), 0.6, method="reciprocal", use_cuda_kernels=False)
    np.testing.assert_array_equal(host(with_kernels.labels), host(composed.labels))


def test_bad_inputs(xp):
    f = xp.ones((4, 3), dtype=xp.float32)
    with pytest.raises(KernelInputError, match="method must be one of"):
        average_linkage(f, 0.6, method="single")
    with pytest.raises(KernelInputError, match=r"tau=1.5 must be in \(0, 1\]"):
        average_linkage(f, 1.5)
    with pytest.raises(KernelInputError, match=r"average_linkage: features must be 2-D, got shape \(4,\)"):
        average_linkage(xp.ones(4, dtype=xp.float32), 0.6)
    with pytest.raises(KernelInputError, match="features must be float32, got shape \\(4, 3\\) dtype float64"):
        average_linkage(xp.ones((4, 3)), 0.6)
    if xp.__name__ == "cupy":
        with pytest.raises(KernelInputError, match="needs NumPy arrays"):
            average_linkage(f, 0.6, method="components")


def test_chain_reuses_its_sums_buffer_without_reading_stale_values():
    from insid3.kernels.linkage_chain import sums_buffer

    features = synthetic_patch_features(16, 16, 24, centres=6, noise=0.6, seed=9)
    expected = average_linkage(features, 0.6, method="chain").labels
    n = features.shape[0]
    buffer = sums_buffer(n * (n - 1) // 2)
    buffer[:] = np.nan  # whatever a previous image left there must never be read
    assert sums_buffer(n * (n - 1) // 2).base is buffer.base
    np.testing.assert_array_equal(average_linkage(features, 0.6, method="chain").labels, expected)
    assert same_partition(expected, oracle.cluster(features, 0.6))
