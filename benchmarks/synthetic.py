"""Seeded synthetic patch features shaped like DINOv3 outputs, for tests and benchmarks.

Real patch features form spatial blobs (objects, stuff regions) whose features are similar
inside a blob and blend at boundaries. We place `centres` random blob centres on the h x w grid,
give each a random direction in R^C, mix the directions of nearby centres per patch (a sharp
softmax over squared distances, so boundaries blend), add isotropic noise and L2-normalise.
With tau = 0.6, noise 0.6-0.75 gives tens to a few hundred average-linkage clusters on a
64 x 64 grid; noise >= 1 makes most patches singletons; noise 0 makes whole blobs identical.
"""

from __future__ import annotations

import numpy as np


def synthetic_patch_features(
    h: int, w: int, channels: int, *, centres: int = 40, noise: float = 0.7, seed: int = 0,
    noise_seed: int | None = None,
) -> np.ndarray:
    """(h * w, channels) float32, row-major patches, L2-normalised. `seed` draws the scene
    (centres and their directions); `noise_seed` (default: seed) the noise, so several views of
    one scene share a seed and differ in noise_seed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.float64)
    centre_positions = rng.uniform(0.0, [h, w], size=(centres, 2))
    directions = rng.standard_normal((centres, channels))
    squared = ((grid[:, None, :] - centre_positions[None]) ** 2).sum(axis=-1)
    sharpness = 10.0 / (2.0 * (0.15 * max(h, w)) ** 2)
    weights = np.exp(-(squared - squared.min(axis=1, keepdims=True)) * sharpness)
    mixed = (weights / weights.sum(axis=1, keepdims=True)) @ directions
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    noise_rng = rng if noise_seed is None else np.random.default_rng(noise_seed)
    noisy = mixed + noise * noise_rng.standard_normal(mixed.shape) / np.sqrt(channels)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.astype(np.float32)


def synthetic_basis(channels: int, components: int, *, seed: int = 0) -> np.ndarray:
    """(channels, components) float32 with orthonormal columns (a stand-in positional basis)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((channels, components)))
    return q.astype(np.float32)
