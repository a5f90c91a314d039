"""insid3.kernels: INSID3 steps 4-9 as pure array functions for NumPy (CPU) and CuPy (GPU).

One body of code serves both: every function takes its array module from its inputs
(`array_module`), uses only APIs both modules provide, and never copies between host and
device (`to_numpy` is the one explicit copy back). The names below are what the engine calls;
tests and benchmarks reach the pieces inside through the submodules.

    debias_frame, debiased_coordinates             §4
    downsample_mask, prototype                     §5
    forward_similarity, forward_candidates         §6
    average_linkage_clusters                       §7
    pruned_aggregate (with a ReferenceSide): backward votes only where they can change the
        mask, then seed and merge                  §6 + §8
    exact_cluster_scores: a cluster's score exactly where pruned_aggregate only bounded it
    upsample_mask                                  §9
    snap_points, source_descriptors, keypoint_similarity, gaussian_soft_argmax, patch_to_pixels
                                                   keypoint matching (docs/correspondence.md)
"""

if __name__ != "insid3.kernels":  # imported as `kernels` with the repository root on sys.path
    from insid3.shadowing import yield_to_installed

    yield_to_installed(__name__, __file__)

from insid3.kernels.arrays import array_module, to_numpy
from insid3.kernels.correspondence import (
    gaussian_soft_argmax,
    keypoint_similarity,
    patch_to_pixels,
    snap_points,
    source_descriptors,
)
from insid3.kernels.debias import debias_frame, debiased_coordinates
from insid3.kernels.linkage import average_linkage_clusters
from insid3.kernels.matching import ReferenceSide, forward_candidates, forward_similarity, prototype
from insid3.kernels.pruned import pruned_aggregate
from insid3.kernels.pruned_scores import exact_cluster_scores
from insid3.kernels.resize import downsample_mask, upsample_mask

__all__ = [
    "ReferenceSide",
    "array_module",
    "average_linkage_clusters",
    "debias_frame",
    "debiased_coordinates",
    "downsample_mask",
    "exact_cluster_scores",
    "forward_candidates",
    "forward_similarity",
    "gaussian_soft_argmax",
    "keypoint_similarity",
    "patch_to_pixels",
    "prototype",
    "pruned_aggregate",
    "snap_points",
    "source_descriptors",
    "to_numpy",
    "upsample_mask",
]
