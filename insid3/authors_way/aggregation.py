"""§8 seed and aggregation, with the authors' loop over clusters."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cluster_prototypes(features: torch.Tensor, labels: torch.Tensor, clusters: int) -> torch.Tensor:
    """(K, C): each cluster's unit-length mean feature, one cluster at a time. sklearn's labels
    leave no cluster empty, so the authors' random stand-in for an empty one never runs."""
    return torch.stack([F.normalize(features[labels == k].mean(dim=0), dim=0) for k in range(clusters)])


def above_merge_threshold(scores: torch.Tensor, merge_threshold: float) -> torch.Tensor:
    """scores > merge_threshold, compared the authors' way: their scores are a float32 tensor and
    torch rounds a Python float compared with it to float32 (-1e-160 becomes -0.0, which a score
    of 0 does not exceed). Scores of another dtype meet that same float32 threshold."""
    threshold = torch.tensor(merge_threshold, dtype=torch.float32, device=scores.device)
    return scores > threshold.to(scores.dtype)


def aggregate(
    labels: torch.Tensor,
    candidate: torch.Tensor,
    features: torch.Tensor,
    debiased: torch.Tensor,
    similarity: torch.Tensor,
    proto: torch.Tensor,
    merge_threshold: float,
) -> torch.Tensor:
    """(N,) bool patch mask: every cluster scored cross * intra * area weight against the seed.

    labels (N,) int64 from §7, candidate (N,) bool from §6, features / debiased (N, C) original
    and debiased target features, similarity (N,) the forward similarities, proto (C,)."""
    if not candidate.any():
        return candidate
    clusters = int(labels.max()) + 1
    matched, hits = labels[candidate].unique(return_counts=True)
    areas = labels.unique(return_counts=True)[1]
    area_weight = torch.zeros(clusters, dtype=similarity.dtype, device=similarity.device)
    area_weight[matched] = hits.to(similarity.dtype)
    area_weight = area_weight / areas
    debiased_prototypes = cluster_prototypes(debiased, labels, clusters)
    seed = int(matched[int(torch.argmax(proto @ debiased_prototypes[matched].T))])
    original_prototypes = cluster_prototypes(features, labels, clusters)
    intra = original_prototypes @ original_prototypes[seed]
    cross = torch.stack([similarity[labels == k].mean() for k in range(clusters)])
    area_weight[seed] = 1.0
    scores = cross * intra * area_weight
    return above_merge_threshold(scores, merge_threshold)[labels]
