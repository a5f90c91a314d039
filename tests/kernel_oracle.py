"""Plain transcription of the INSID3 algorithm doc (steps 4-9) for the kernel tests and the
kernel benchmark: loops over shots and clusters, sklearn for the clustering, torch's
F.interpolate for every resize (as the reference). Also the `xp` fixture that runs a test once
with NumPy and once with CuPy (skipped without CuPy or a CUDA device).

Deliberately naive: this is the yardstick, not the implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module under test: numpy always, cupy when importable with a device."""
    if request.param == "numpy":
        return np
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy variant: cupy is not installed")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver missing
        devices = 0
    if devices == 0:
        pytest.skip("CuPy variant: no CUDA device")
    return cupy


def host(array) -> np.ndarray:
    """NumPy copy of a NumPy or CuPy array (tests compare on the host)."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def same_partition(a, b) -> bool:
    """True when two label vectors describe the same partition (up to renumbering)."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _torch():
    return pytest.importorskip("torch", reason="torch is needed for the F.interpolate oracle")


def normalize(x: np.ndarray) -> np.ndarray:
    """F.normalize(x, dim=-1): x / max(||x||, 1e-12)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# §4 -------------------------------------------------------------------------------------------
def debias(features: np.ndarray, basis: np.ndarray, s: int) -> np.ndarray:
    """normalise(P_perp x) per patch with P_perp = I - B B^T, as the reference, in float64."""
    b = basis[:, :s].astype(np.float64)
    p_perp = np.eye(basis.shape[0]) - b @ b.T
    out = np.empty(features.shape, dtype=np.float64)
    flat_in = features.reshape(-1, features.shape[-1]).astype(np.float64)
    flat_out = out.reshape(flat_in.shape)
    for i in range(flat_in.shape[0]):
        flat_out[i] = normalize(p_perp @ flat_in[i])
    return out


# §5 -------------------------------------------------------------------------------------------
def interpolate(array2d: np.ndarray, size, mode: str) -> np.ndarray:
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(array2d, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(x, size=tuple(int(v) for v in size), mode=mode, **kwargs)[0, 0].numpy()


def downsample_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """The reference's utils/data.py downsample_mask, via torch."""
    torch = _torch()
    down = interpolate(mask, (h, w), "bilinear") > 0.5
    if down.sum() == 0:
        down = interpolate(mask, (h, w), "nearest") > 0.5
        if down.sum() == 0:
            center = torch.argwhere(torch.from_numpy(mask) > 0).float().mean(dim=0)
            scale = mask.shape[-1] // w
            cy, cx = (center / scale).int().tolist()
            down[cy, cx] = True
    return down


def prototype(debiased_shots: np.ndarray, shot_masks: np.ndarray) -> np.ndarray:
    means = []
    for shot in range(debiased_shots.shape[0]):
        fg = debiased_shots[shot][shot_masks[shot]].astype(np.float64)
        if fg.shape[0] > 0:
            means.append(fg.mean(axis=0))
    return normalize(np.stack(means).mean(axis=0))


# §6 -------------------------------------------------------------------------------------------
def forward(target_debiased: np.ndarray, proto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sim_fwd float32, forward mask); the quantile fallback through torch.quantile."""
    sim = (target_debiased.astype(np.float64) @ proto.astype(np.float64)).astype(np.float32)
    mask = sim > 0
    if mask.sum() == 0:
        torch = _torch()
        mask = sim > float(torch.quantile(torch.from_numpy(sim), 0.9))
    return sim, mask


def backward(target_debiased: np.ndarray, reference_debiased: np.ndarray, reference_masks: np.ndarray) -> np.ndarray:
    """Majority vote of per-shot nearest neighbours (argmax: first index)."""
    shots = reference_debiased.shape[0]
    votes = np.zeros(target_debiased.shape[0], dtype=np.int64)
    for shot in range(shots):
        sim = target_debiased.astype(np.float64) @ reference_debiased[shot].astype(np.float64).T
        for i in range(target_debiased.shape[0]):
            votes[i] += int(reference_masks[shot][int(np.argmax(sim[i]))])
    return votes >= math.ceil(shots / 2)


# §7 -------------------------------------------------------------------------------------------
def cluster(features: np.ndarray, tau: float) -> np.ndarray:
    """The reference's utils/clustering.py: sklearn on the float32 cosine distances."""
    from sklearn.cluster import AgglomerativeClustering

    if features.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    distances = 1.0 - np.clip(features @ features.T, -1, 1)
    return AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=float(1.0 - tau)
    ).fit_predict(distances)


# §8 -------------------------------------------------------------------------------------------
def cluster_prototypes(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack([normalize(x[labels == c].astype(np.float64).mean(axis=0)) for c in range(k)])


def aggregate(labels, candidate, features, debiased, sim_fwd, proto, merge_threshold) -> np.ndarray:
    """The reference's _seed_and_aggregate with a loop per cluster."""
    if candidate.sum() == 0:
        return candidate.copy()
    k = int(labels.max()) + 1
    matched_ids, hits = np.unique(labels[candidate], return_counts=True)
    areas = np.array([(labels == c).sum() for c in range(k)])
    area_weights = np.zeros(k)
    area_weights[matched_ids] = hits
    area_weights = area_weights / areas
    debiased_protos = cluster_prototypes(debiased, labels, k)
    seed = matched_ids[int(np.argmax(debiased_protos[matched_ids] @ proto.astype(np.float64)))]
    original_protos = cluster_prototypes(features, labels, k)
    intra = original_protos @ original_protos[seed]
    cross = np.array([sim_fwd[labels == c].astype(np.float64).mean() for c in range(k)])
    combined = cross * intra
    area_weights[seed] = 1.0
    combined *= area_weights
    # The reference compares a float32 tensor with a Python float, which torch rounds to float32
    # (a threshold of -1e-160 becomes -0.0, and a score of 0 is then not above it).
    threshold = float(np.float32(merge_threshold))
    return np.array([combined[labels[i]] > threshold for i in range(labels.shape[0])])


# §9 -------------------------------------------------------------------------------------------
def upsample_mask(patch_mask: np.ndarray, resolution: int, original_size) -> np.ndarray:
    square = interpolate(patch_mask, (resolution, resolution), "bilinear") > 0.5
    return interpolate(square, original_size, "bilinear") > 0.5


def segment(target, references, reference_masks, basis, s, tau, merge_threshold, resolution, original_size, grid):
    """Steps 4-9 end to end: target (N, C) and references (S, N, C) original features,
    reference_masks (S, R, R) bool -> (H, W) bool."""
    h, w = grid
    target_debiased = debias(target, basis, s).astype(np.float32)
    references_debiased = debias(references, basis, s).astype(np.float32)
    down = np.stack([downsample_mask(m, h, w).reshape(-1) for m in reference_masks])
    proto = prototype(references_debiased, down).astype(np.float32)
    sim_fwd, forward_mask = forward(target_debiased, proto)
    candidate = forward_mask & backward(target_debiased, references_debiased, down)
    if candidate.sum() == 0:
        return upsample_mask(candidate.reshape(h, w), resolution, original_size)
    labels = cluster(target, tau)
    patch_mask = aggregate(labels, candidate, target, target_debiased, sim_fwd, proto, merge_threshold)
    return upsample_mask(patch_mask.reshape(h, w), resolution, original_size)
