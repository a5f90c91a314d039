"""Keypoint correspondence as array kernels (docs/correspondence.md, "Matching one keypoint").

Five steps, each one function for NumPy and CuPy alike (the module comes from the inputs):

    snap_points            source keypoints (x, y) in pixels -> the patch cell (u, v) each reads
    source_descriptors     the source features at those cells: (K, D)
    keypoint_similarity    the descriptors against every target patch: (..., K, h, w)
    gaussian_soft_argmax   each map -> an expected (x, y) in patch units, and its peak value
    patch_to_pixels        patch units -> target pixels

Everything stays float32, as the authors' matching runs: the pixel-to-grid ratios are Python
doubles rounded to float32 before they multiply, keypoints are snapped by round-half-to-even
(`rint`, not floor), and the soft-argmax covers the whole map (no window).
"""

from __future__ import annotations

from collections.abc import Sequence

from insid3.kernels.arrays import Array, KernelInputError, array_module, require

# The authors' constants: the Gaussian's sigma in patches and the softmax temperature.
SIGMA_PATCHES = 7
TEMPERATURE = 0.04


def _scales(xp, to_size: Sequence[int], from_size: Sequence[int]) -> Array:
    """float32 [to_w / from_w, to_h / from_h] for sizes given as (height, width): each ratio a
    Python double first, then rounded once to float32 (the authors scale by a double)."""
    to_h, to_w = (int(side) for side in to_size)
    from_h, from_w = (int(side) for side in from_size)
    if min(to_h, to_w, from_h, from_w) < 1:
        raise KernelInputError(f"sizes {tuple(to_size)} and {tuple(from_size)} must be positive")
    return xp.asarray([to_w / from_w, to_h / from_h], dtype=xp.float32)


def snap_points(points: Array, image_size: Sequence[int], grid: Sequence[int]) -> Array:
    """(K, 2) float32 (x, y) pixels of an image of `image_size` (H, W) -> (K, 2) int64 (u, v)
    cells of the `grid` (h, w): x * f32(w / W), y * f32(h / H) in float32, rounded half to even,
    clamped to [0, w - 1] x [0, h - 1]. Callers check that the points are finite."""
    require("snap_points", "points", points, shape=(None, 2), dtype="float32")
    xp = array_module(points)
    rows, columns = (int(side) for side in grid)
    scaled = points * _scales(xp, grid, image_size)  # (K, 2) float32
    cells = xp.rint(scaled).astype(xp.int64)  # rint rounds half to even, like torch.round
    upper = xp.asarray([columns - 1, rows - 1], dtype=xp.int64)
    return xp.minimum(xp.maximum(cells, 0), upper)


def source_descriptors(source: Array, cells: Array, grid: Sequence[int]) -> Array:
    """(K, D) rows of `source` (N, D) features at the (u, v) cells of `snap_points` (row v, column
    u of the row-major grid). Taken before debiasing: it acts on each vector alone, so only the K
    descriptors need it on the source side."""
    require("source_descriptors", "source", source, ndim=2, dtype="float32")
    require("source_descriptors", "cells", cells, shape=(None, 2), dtype="integer")
    array_module(source, cells)
    rows, columns = (int(side) for side in grid)
    if source.shape[0] != rows * columns:
        raise KernelInputError(
            f"source_descriptors: source {tuple(source.shape)} must hold the N = {rows * columns} patches "
            f"of the {rows}x{columns} grid"
        )
    return source[cells[:, 1] * columns + cells[:, 0]]


def keypoint_similarity(descriptors: Array, target: Array, grid: Sequence[int]) -> Array:
    """Cosine maps of K descriptors against every target patch.

    descriptors: (K, D) float32 unit vectors (`source_descriptors`, debiased or not).
    target: (..., N, D) float32 unit features of one or more targets, in the same coordinates.
    Returns (..., K, h, w) float32.
    """
    require("keypoint_similarity", "descriptors", descriptors, ndim=2, dtype="float32")
    require("keypoint_similarity", "target", target, min_ndim=2, dtype="float32")
    xp = array_module(descriptors, target)
    rows, columns = (int(side) for side in grid)
    if target.shape[-2] != rows * columns or target.shape[-1] != descriptors.shape[-1]:
        raise KernelInputError(
            f"keypoint_similarity: target {tuple(target.shape)} must hold (N = {rows * columns}, "
            f"D = {descriptors.shape[-1]}) patches of the {rows}x{columns} grid"
        )
    maps = xp.matmul(descriptors, xp.swapaxes(target, -1, -2))  # (..., K, N)
    return maps.reshape(*maps.shape[:-1], rows, columns)


def gaussian_soft_argmax(
    similarity: Array, *, sigma: float = SIGMA_PATCHES, temperature: float = TEMPERATURE
) -> tuple[Array, Array]:
    """The authors' Gaussian-weighted soft-argmax of each (h, w) map over all its h * w cells.

    A Gaussian exp(-d^2 / (2 sigma^2)) (unnormalised, d in patches) centred on the map's argmax
    multiplies the raw similarities; a softmax at `temperature` over every cell weighs the patch
    indices. Far cells keep weight exp(-peak / temperature), so a weak peak drifts toward the
    grid's centre; the result never exceeds (w - 1, h - 1).

    similarity: (..., h, w) float32. Returns ((..., 2) float32 (x, y) in patch units, no +0.5;
    (...,) float32 peak similarity). Ties for the maximum go to the first cell in raster order.
    """
    require("gaussian_soft_argmax", "similarity", similarity, min_ndim=2, dtype="float32")
    xp = array_module(similarity)
    *lead, rows, columns = similarity.shape
    flat = similarity.reshape(*lead, rows * columns)  # (..., N)
    index = flat.argmax(axis=-1)  # (...,)
    peak = flat.max(axis=-1)
    peak_x = (index % columns).astype(xp.float32)[..., None]
    peak_y = (index // columns).astype(xp.float32)[..., None]
    grid_x = xp.tile(xp.arange(columns, dtype=xp.float32), rows)  # (N,) cell i -> column i % w
    grid_y = xp.repeat(xp.arange(rows, dtype=xp.float32), columns)  # (N,) cell i -> row i // w
    distance2 = (grid_x - peak_x) ** 2 + (grid_y - peak_y) ** 2
    logits = xp.exp(-distance2 / xp.float32(2 * sigma**2)) * flat
    weights = xp.exp((logits - logits.max(axis=-1, keepdims=True)) / xp.float32(temperature))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    matches = xp.stack([(weights * grid_x).sum(axis=-1), (weights * grid_y).sum(axis=-1)], axis=-1)
    return matches, peak


def patch_to_pixels(matches: Array, image_size: Sequence[int], grid: Sequence[int]) -> Array:
    """(..., 2) float32 (x, y) in patch units -> pixels of an image of `image_size` (H, W):
    x * f32(W / w), y * f32(H / h). Patch j maps to its top-left corner (no +0.5), the same
    convention as `snap_points`, so the two half-patch offsets cancel."""
    require("patch_to_pixels", "matches", matches, min_ndim=1, dtype="float32")
    xp = array_module(matches)
    if matches.shape[-1] != 2:
        raise KernelInputError(f"patch_to_pixels: matches must end in (x, y), got shape {tuple(matches.shape)}")
    return matches * _scales(xp, image_size, grid)
