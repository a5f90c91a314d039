"""The kernel tests' yardstick: a NumPy view of the one transcription of the published pipeline,
insid3.authors_way (torch, loops over shots and clusters, sklearn, F.interpolate).

Each function takes and returns NumPy arrays and calls the transcription's function of the same
section. Features go in as float64, so the yardstick carries float64 precision, except where the
authors' float32 is the point: the §7 distances (the partition must equal sklearn's on the
float32 distances the authors build) and the forward similarities, rounded to float32 as the
kernels' are before their quantile fallback. Needs torch (and sklearn for §7): a test that calls
the oracle is skipped without them. `host` and `same_partition` are what the tests compare with.
"""

from __future__ import annotations

import numpy as np
import pytest


def _authors_way():
    pytest.importorskip("torch", reason="the oracle is the torch transcription insid3.authors_way")
    import insid3.authors_way

    return insid3.authors_way


def _tensor(array, dtype=None):
    """A torch copy of a NumPy array (of `dtype` when given)."""
    import torch

    return torch.from_numpy(np.array(array, dtype=dtype))


def _float64(array):
    return _tensor(array, np.float64)


def host(array) -> np.ndarray:
    """NumPy copy of a NumPy or CuPy array (tests compare on the host)."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def same_partition(a, b) -> bool:
    """True when two label vectors describe the same partition (up to renumbering)."""
    return _authors_way().same_partition(a, b)


def normalize(x: np.ndarray) -> np.ndarray:
    """F.normalize(x, dim=-1) in float64: x / max(||x||, 1e-12)."""
    import torch.nn.functional as F

    return F.normalize(_float64(x), dim=-1).numpy()


# §4 -------------------------------------------------------------------------------------------
def debias(features: np.ndarray, basis: np.ndarray, s: int) -> np.ndarray:
    return _authors_way().debias(_float64(features), _float64(basis[:, :s])).numpy()


# §5 -------------------------------------------------------------------------------------------
def interpolate(array2d: np.ndarray, size, mode: str) -> np.ndarray:
    return _authors_way().interpolate(_tensor(array2d), size, mode).numpy()


def downsample_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    return _authors_way().downsample_mask(_tensor(mask), (h, w)).numpy()


def prototype(debiased_shots: np.ndarray, shot_masks: np.ndarray) -> np.ndarray:
    return _authors_way().prototype(_float64(debiased_shots), _tensor(shot_masks)).numpy()


# §6 -------------------------------------------------------------------------------------------
def forward(target_debiased: np.ndarray, proto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(similarities rounded to float32, forward mask of those)."""
    authors_way = _authors_way()
    sim = authors_way.forward_similarity(_float64(target_debiased), _float64(proto)).float()
    return sim.numpy(), authors_way.forward_candidates(sim).numpy()


def backward(target_debiased: np.ndarray, reference_debiased: np.ndarray, reference_masks: np.ndarray) -> np.ndarray:
    return _authors_way().backward_candidates(
        _float64(target_debiased), _float64(reference_debiased), _tensor(reference_masks)
    ).numpy()


# §7 -------------------------------------------------------------------------------------------
def cluster(features: np.ndarray, tau: float) -> np.ndarray:
    """Labels of the authors' clustering on the features as given (float32: their distances)."""
    return _authors_way().cluster(_tensor(features), tau).numpy()


def agglomerative_labels(distances: np.ndarray, distance_threshold: float) -> np.ndarray:
    """sklearn, configured as the authors, on a precomputed distance matrix."""
    return _authors_way().agglomerative_labels(distances, distance_threshold)


# §8 -------------------------------------------------------------------------------------------
def cluster_prototypes(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return _authors_way().cluster_prototypes(_float64(x), _tensor(labels), k).numpy()


def aggregate(labels, candidate, features, debiased, sim_fwd, proto, merge_threshold) -> np.ndarray:
    return _authors_way().aggregate(
        _tensor(labels), _tensor(candidate), _float64(features), _float64(debiased), _float64(sim_fwd),
        _float64(proto), merge_threshold,
    ).numpy()


# §9 -------------------------------------------------------------------------------------------
def upsample_mask(patch_mask: np.ndarray, resolution: int, original_size) -> np.ndarray:
    return _authors_way().upsample(_tensor(patch_mask), resolution, tuple(original_size)).numpy()


def segment(target, references, reference_masks, basis, s, tau, merge_threshold, resolution, original_size, grid):
    """§4-§9 end to end: target (N, C) and references (S, N, C) original features,
    reference_masks (S, R, R) bool -> (H, W) bool. The partition is the authors' on the float32
    target features; every other step runs in float64."""
    authors_way = _authors_way()
    features = _float64(np.concatenate([references, target[None]]))
    return authors_way.segment_features(
        features, _tensor(reference_masks), _float64(basis[:, :s]), tau=tau, merge_threshold=merge_threshold,
        grid=tuple(grid), resolution=resolution, original_size=tuple(original_size),
        labels=authors_way.cluster(_tensor(target), tau),
    ).numpy()
