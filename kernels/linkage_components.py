"""Average linkage per connected component (the exact CPU path; NumPy only).

Two clusters merge only while their average distance is < t, which needs at least one pair of
members closer than t; so every cluster lies inside one connected component of the graph
"d(a, b) < t". Clustering each component on its own (fastcluster, float64 averages as scipy)
and keeping the merges below t gives sklearn's partition; singleton components need no work.

Components come from a breadth-first search over the dense boolean adjacency (each row read
once, ~15 ms at N = 4096). scipy.sparse.csgraph.connected_components was measured at 0.1 s for
0.5 M edges and 2.7 s for the dense single-cluster graph (the CSR conversion dominates), so it
is not used here.

Memory at N = 4096: the float32 distances (64 MiB, from the caller) + the bool adjacency
(16 MiB) + per component of k patches its float64 condensed form (4 k^2 bytes, handed to
fastcluster without a copy): 64 + 16 + 67 MiB ~ 0.15 GiB in the worst case (a single component
of all N patches), far less for realistic components.
"""

from __future__ import annotations

import fastcluster
import numpy as np

from insid3.kernels.linkage_reciprocal import float32_limit


def graph_components(adjacency: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a symmetric boolean adjacency matrix (diagonal ignored).

    Returns (component id per node, count). Nodes without neighbours become singleton
    components without a search; the others are found by BFS, one row gather per frontier.
    """
    n = adjacency.shape[0]
    if adjacency.diagonal().any():  # count the neighbours besides the node itself
        unvisited = np.count_nonzero(adjacency, axis=1) > adjacency.diagonal()
    else:  # no self loops (component_linkage clears them): any() stops early, 0.6 ms vs 8 ms
        unvisited = adjacency.any(axis=1)
    component = np.full(n, -1, dtype=np.int64)
    count = 0
    for seed in np.flatnonzero(unvisited):
        if not unvisited[seed]:
            continue
        unvisited[seed] = False
        frontier = np.array([seed])
        members = [frontier]
        while frontier.size:
            reached = adjacency[frontier].any(axis=0) & unvisited
            frontier = np.flatnonzero(reached)
            unvisited[frontier] = False
            members.append(frontier)
        component[np.concatenate(members)] = count
        count += 1
    isolated = np.flatnonzero(component < 0)
    component[isolated] = count + np.arange(isolated.shape[0])
    return component, count + isolated.shape[0]


# Up to this many runs of consecutive patch indices, rows are copied run by run as slices;
# beyond, one fancy gather per row. At N = 4096, a 4095-patch component (2 runs): 33 ms by
# slices against 48 ms by gathers (blocks of rows gathered at once: 54 ms).
MAX_SLICED_RUNS = 4


def condensed_distances(distances: np.ndarray, members: np.ndarray) -> np.ndarray:
    """scipy's condensed float64 form (upper triangle, row by row) of distances[members][:, members]
    for ascending members, written in one pass without the k x k float32 copy that
    squareform(distances[np.ix_(members, members)]).astype(np.float64) would make.
    Only the upper triangle of `distances` is read."""
    k = members.shape[0]
    out = np.empty(k * (k - 1) // 2, dtype=np.float64)
    if k < 2:
        return out
    breaks = np.flatnonzero(np.diff(members) != 1) + 1
    run_first = np.concatenate([[0], breaks])  # positions in members where a run starts
    run_stop = np.concatenate([breaks, [k]])
    start = 0
    if run_first.shape[0] > MAX_SLICED_RUNS:
        for a in range(k - 1):
            stop = start + k - 1 - a
            out[start:stop] = distances[members[a]].take(members[a + 1 :])
            start = stop
        return out
    runs = list(zip(run_first.tolist(), run_stop.tolist(), members[run_first].tolist()))
    for a in range(k - 1):
        row = distances[members[a]]
        for first, last, patch in runs:  # the rest of a's run, then every later run
            if last <= a + 1:
                continue
            skip = max(first, a + 1) - first
            stop = start + last - first - skip
            out[start:stop] = row[patch + skip : patch + last - first]
            start = stop
    return out


def _average_linkage(condensed: np.ndarray, k: int) -> np.ndarray:
    """fastcluster average linkage of a float64 condensed matrix (overwritten), scipy format.

    fastcluster.linkage starts with np.array(X), which copies X even with preserve_input=False
    (67 MiB and ~25 ms at k = 4096), so call the wrapper it dispatches to when it is there.
    """
    wrap, methods = getattr(fastcluster, "linkage_wrap", None), getattr(fastcluster, "mthidx", None)
    if wrap is None or methods is None or "average" not in methods:
        return fastcluster.linkage(condensed, method="average", preserve_input=False)
    merges = np.empty((k - 1, 4))
    wrap(k, condensed, merges, methods["average"])
    return merges


def cut_below(merges: np.ndarray, n: int, threshold: float) -> np.ndarray:
    """Leaf roots after the merges of a scipy-format linkage whose height is < threshold.

    sklearn keeps n_clusters_ = count(height >= t) + 1 clusters, i.e. it undoes the merges at or
    above t from the top of the (height-sorted) dendrogram; with monotone heights that is the
    prefix of rows below t. Returns, per leaf, the smallest leaf index of its cluster.
    """
    kept = int(np.count_nonzero(merges[:, 2] < threshold))
    parent = np.arange(2 * n - 1)
    children = merges[:kept, :2].astype(np.int64)
    parent[children[:, 0]] = n + np.arange(kept)
    parent[children[:, 1]] = n + np.arange(kept)
    for _ in range(int(np.ceil(np.log2(max(kept, 1)))) + 1):
        parent = parent[parent]
    top = parent[:n]
    smallest = np.full(2 * n - 1, n, dtype=np.int64)
    np.minimum.at(smallest, top, np.arange(n))
    return smallest[top]


def component_linkage(distances: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Average-linkage clusters of an (N, N) float32 distance matrix (symmetric; only the upper
    triangle is read by fastcluster, as sklearn reads it) cut at distance < threshold.

    Returns (root, components): root[i] = smallest index of i's cluster; components = number of
    connected components of the "< threshold" graph.
    """
    n = distances.shape[0]
    adjacency = distances < float32_limit(threshold)
    np.fill_diagonal(adjacency, False)  # d(i, i) is no edge; lets graph_components use any()
    component, count = graph_components(adjacency)
    root = np.arange(n, dtype=np.int64)
    order = np.argsort(component, kind="stable")
    sizes = np.bincount(component, minlength=count)
    for members in np.split(order, np.cumsum(sizes)[:-1]):
        k = members.shape[0]
        if k == 1:
            continue
        if k == 2:  # adjacent, so their single distance is below the threshold
            root[members] = members[0]
            continue
        condensed = condensed_distances(distances, members)
        merges = _average_linkage(condensed, k)
        root[members] = members[cut_below(merges, k, threshold)]
    return root, count
