"""§7 clustering the target, with scikit-learn as the authors (its one configuration is here)."""

from __future__ import annotations

import numpy as np
import torch


def cosine_distances(features: torch.Tensor) -> np.ndarray:
    """1 - clip(F F^T, -1, 1) of the original features, in their dtype (float32 for the
    authors), on the host where sklearn reads it."""
    return (1.0 - (features @ features.T).clamp(-1, 1)).cpu().numpy()


def agglomerative_labels(distances: np.ndarray, distance_threshold: float) -> np.ndarray:
    """(N,) int64 labels of average-linkage clustering on a precomputed (N, N) distance matrix:
    clusters merge while their mean distance is < distance_threshold (the authors pass 1 - tau).
    One patch is one cluster (sklearn needs two samples; the authors never have one)."""
    from sklearn.cluster import AgglomerativeClustering

    if distances.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    clustering = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=distance_threshold
    )
    return clustering.fit_predict(distances)


def cluster(features: torch.Tensor, tau: float) -> torch.Tensor:
    """(N,) int64 labels of the target's original features (N, C), cut at distance 1 - tau."""
    labels = agglomerative_labels(cosine_distances(features), float(1.0 - tau))
    return torch.from_numpy(labels).long().to(features.device)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label vectors describe the same partition, whatever the numbering: what
    "equal to sklearn's labels" means in §7."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))
