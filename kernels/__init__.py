"""insid3.kernels: INSID3 steps 4-9 as pure array functions for NumPy (CPU) and CuPy (GPU).

One body of code serves both: every function takes its array module from its inputs
(`array_module`), uses only APIs both modules provide, and never copies between host and
device. The engine times the stages separately and calls these names:

    debias_frame, debiased_coordinates (or debias)  §4
    downsample_mask, prototype               §5
    forward_similarity, forward_candidates   §6
    backward_votes, backward_candidates      §6
    average_linkage_clusters / average_linkage  §7
    cluster_statistics, seed_cluster, merge_clusters, aggregate  §8
    pruned_aggregate (backward votes + §8, votes only where they can change the mask)  §6 + §8
    upsample_mask (resize_bilinear, resize_nearest)  §9
"""

from insid3.kernels.aggregation import (
    ClusterStatistics,
    aggregate,
    cluster_statistics,
    merge_clusters,
    seed_cluster,
)
from insid3.kernels.arrays import KernelInputError, array_module, l2_normalize, to_numpy
from insid3.kernels.debias import DebiasFrame, debias, debias_frame, debiased_coordinates
from insid3.kernels.linkage import (
    LinkageResult,
    average_linkage,
    average_linkage_clusters,
    cosine_distances,
    distance_threshold,
)
from insid3.kernels.matching import (
    backward_candidates,
    backward_votes,
    forward_candidates,
    forward_similarity,
    prototype,
    torch_quantile,
)
from insid3.kernels.pruned import PrunedAggregate, pruned_aggregate
from insid3.kernels.resize import downsample_mask, resize_bilinear, resize_nearest, upsample_mask

__all__ = [
    "ClusterStatistics",
    "DebiasFrame",
    "KernelInputError",
    "LinkageResult",
    "PrunedAggregate",
    "aggregate",
    "array_module",
    "average_linkage",
    "average_linkage_clusters",
    "backward_candidates",
    "backward_votes",
    "cluster_statistics",
    "cosine_distances",
    "debias",
    "debias_frame",
    "debiased_coordinates",
    "distance_threshold",
    "downsample_mask",
    "forward_candidates",
    "forward_similarity",
    "l2_normalize",
    "merge_clusters",
    "prototype",
    "pruned_aggregate",
    "resize_bilinear",
    "resize_nearest",
    "seed_cluster",
    "to_numpy",
    "torch_quantile",
    "upsample_mask",
]
