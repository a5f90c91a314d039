"""§7: the authors' sklearn clustering against the kernel methods, partitions asserted equal."""

from __future__ import annotations

import statistics

import numpy as np
import torch

from insid3 import authors_way
from insid3.benchmarks.kernels.shapes import TAU, Shape, dense_features_for, features_for, timed
from insid3.benchmarks.writer import table
from insid3.kernels import average_linkage_clusters
from insid3.kernels.linkage import cosine_distances, gram_upper
from insid3.kernels.linkage_chain import chain_linkage
from insid3.kernels.linkage_reciprocal import float32_limit, reciprocal_linkage


def authors_from_features(features: np.ndarray) -> np.ndarray:
    """The authors' §7 from the features: torch's 1 - clip(F F^T), then sklearn."""
    return authors_way.cluster(torch.from_numpy(features), TAU).numpy()


def authors_from_distances(distances: np.ndarray) -> np.ndarray:
    """sklearn alone, configured as the authors, on a precomputed distance matrix."""
    return authors_way.agglomerative_labels(distances, float(1.0 - TAU))


def bench_clustering(shape: Shape, repeats: int, *, dense: bool = False) -> tuple[list[str], dict]:
    features = dense_features_for(shape) if dense else features_for(shape)
    distances = cosine_distances(features)
    upper = gram_upper(features)
    threshold = 1.0 - TAU
    # Compile / load the Numba kernels and warm every path once, untimed.
    average_linkage_clusters(features[:64], TAU, method="chain")
    authors_from_features(features[:64])
    runs: dict[str, list[float]] = {k: [] for k in ("gram", "sk_F", "sk_D", "auto_F", "auto_D", "rec_F", "rec_D")}
    info = {}
    for _ in range(repeats):
        runs["gram"].append(timed(cosine_distances, features)[0])
        t, expected = timed(authors_from_features, features)
        runs["sk_F"].append(t)
        runs["sk_D"].append(timed(authors_from_distances, distances)[0])
        t, auto = timed(lambda: average_linkage_clusters(features, TAU))
        runs["auto_F"].append(t)
        runs["auto_D"].append(timed(chain_linkage, upper, threshold)[0])
        t, rec = timed(lambda: average_linkage_clusters(features, TAU, method="reciprocal"))
        runs["rec_F"].append(t)
        scratch = distances.copy()  # reciprocal overwrites its matrix; the copy is not timed
        t, (_, rounds) = timed(reciprocal_linkage, scratch, threshold)
        runs["rec_D"].append(t)
        for name, labels in (("auto", auto), ("reciprocal", rec)):
            assert authors_way.same_partition(labels, expected), f"{name} partition differs from sklearn"
        edges = int(np.count_nonzero(np.triu(distances < float32_limit(threshold), 1)))
        info = {"clusters": int(auto.max()) + 1, "rounds": rounds, "edges": edges}
    med = {k: statistics.median(v) for k, v in runs.items()}
    n, c = shape.patches, shape.channels
    pairs = n * (n - 1) // 2
    title = (f"### Clustering, {shape.name}{', dense graph' if dense else ''}: N = {n}, C = {c}, tau = {TAU} "
             f"({info['clusters']} clusters; {info['edges']} of {pairs} pairs closer than 1 - tau; "
             f"reciprocal: {info['rounds']} rounds); partitions identical to sklearn: yes")

    def row(name: str, f: str, d: str) -> tuple[str, ...]:
        return (name, f"{med[f] * 1e3:.0f}", f"{med[d] * 1e3:.0f}", f"{med['sk_F'] / med[f]:.1f}x",
                f"{med['sk_D'] / med[d]:.1f}x")

    rows = [
        title, "",
        *table(("method", "from F (ms)", "from D (ms)", "speed-up from F", "speed-up from D"),
               (row("sklearn (the authors' way)", "sk_F", "sk_D"), row("**auto = chain**", "auto_F", "auto_D"),
                row("reciprocal (float32)", "rec_F", "rec_D")), "lrrrr"),
        "",
        f"\"From F\" includes the Gram matrix: the authors' way (torch) and reciprocal build the full float32 "
        f"distance matrix ({med['gram'] * 1e3:.0f} ms of it for the kernels); chain reads the upper triangle of "
        "one ssyrk Gram matrix directly. \"From D\" starts from the precomputed float32 distance matrix "
        "(chain: from that Gram triangle).",
        "",
    ]
    return rows, info
