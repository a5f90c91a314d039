"""Mask resizing with torch.nn.functional.interpolate semantics, for NumPy and CuPy alike.

Doc §5 (reference mask R x R -> h x w) and §9 (patch mask h x w -> R x R -> H x W) both go
through `resize_bilinear` (mode="bilinear", align_corners=False, no antialias) and §5's
fallback through `resize_nearest` (mode="nearest"). Both are separable gathers: O(out pixels),
no dense interpolation matrices.

Numerics follow PyTorch's CPU kernel for float32 (aten/src/ATen/native/cpu/UpSampleKernel.cpp):
the scale in/out and the source coordinates are float32, and the source coordinate
scale * (dst + 0.5) - 0.5 is one fused multiply-add (PyTorch's build contracts it), which we
reproduce exactly by evaluating it in float64 (the product of two float32 values is exact
there) and rounding once. With that, thresholded masks (> 0.5) equal PyTorch's; interpolated
values may differ from PyTorch's in the last bit (its blend may also be contracted to an FMA).
"""

from __future__ import annotations

from typing import Sequence

from insid3.errors import ReferenceMaskError
from insid3.kernels.arrays import Array, KernelInputError, array_module, require


def _out_size(out_hw: Sequence[int], function: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in out_hw)
    except (TypeError, ValueError):
        raise KernelInputError(f"{function}: output size must be (height, width), got {out_hw!r}") from None
    if height < 1 or width < 1:
        raise KernelInputError(f"{function}: output size must be positive, got {(height, width)}")
    return height, width


def _linear_taps(xp, in_size: int, out_size: int):
    """Source indices (i0, i1) and weights (w0, w1) of every output position along one axis."""
    if in_size == out_size:  # PyTorch copies in this case: weight 1 on the same index
        index = xp.arange(out_size, dtype=xp.int64)
        return index, index, xp.ones(out_size, xp.float32), xp.zeros(out_size, xp.float32)
    ratio = xp.float32(in_size) / xp.float32(out_size)  # float32 division, as PyTorch
    centres = xp.arange(out_size, dtype=xp.float32) + xp.float32(0.5)
    # fma(ratio, centre, -0.5) with one rounding: exact in float64, then rounded to float32.
    source = (xp.float64(ratio) * centres.astype(xp.float64) - 0.5).astype(xp.float32)
    source = xp.maximum(source, xp.float32(0))
    i0 = xp.minimum(xp.floor(source).astype(xp.int64), in_size - 1)
    w1 = xp.clip(source - i0.astype(xp.float32), xp.float32(0), xp.float32(1))
    i1 = xp.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, xp.float32(1) - w1, w1


def _nearest_taps(xp, in_size: int, out_size: int):
    """Source index of every output position along one axis (mode="nearest", not nearest-exact)."""
    index = xp.arange(out_size, dtype=xp.int64)
    if out_size == in_size:
        return index
    if out_size == 2 * in_size:
        return index >> 1
    scale = xp.float32(in_size) / xp.float32(out_size)
    source = xp.floor(index.astype(xp.float32) * scale).astype(xp.int64)
    return xp.minimum(source, in_size - 1)


def resize_bilinear(array2d: Array, out_hw: Sequence[int]) -> Array:
    """Bilinear resize of a 2-D array to out_hw = (height, width): float32 result equal to
    F.interpolate(x[None, None], size=out_hw, mode="bilinear", align_corners=False)[0, 0].

    Separable: interpolate along x first, then along y, in PyTorch's order of operations.
    A bool or integer input is treated as 0/1 (or its values) in float32.
    """
    require("resize_bilinear", "array2d", array2d, ndim=2)
    xp = array_module(array2d)
    height, width = _out_size(out_hw, "resize_bilinear")
    x = array2d.astype(xp.float32, copy=False)
    c0, c1, wc0, wc1 = _linear_taps(xp, x.shape[1], width)
    r0, r1, wr0, wr1 = _linear_taps(xp, x.shape[0], height)
    # In-place products and sums: the same float32 operations as a*w0 + b*w1, fewer buffers.
    columns = xp.take(x, c0, axis=1)
    columns *= wc0
    right = xp.take(x, c1, axis=1)
    right *= wc1
    columns += right
    out = xp.take(columns, r0, axis=0)
    out *= wr0[:, None]
    below = xp.take(columns, r1, axis=0)
    below *= wr1[:, None]
    out += below
    return out


def resize_nearest(array2d: Array, out_hw: Sequence[int]) -> Array:
    """Nearest resize of a 2-D array, equal to F.interpolate(..., mode="nearest"); keeps dtype."""
    require("resize_nearest", "array2d", array2d, ndim=2)
    xp = array_module(array2d)
    height, width = _out_size(out_hw, "resize_nearest")
    rows = _nearest_taps(xp, array2d.shape[0], height)
    cols = _nearest_taps(xp, array2d.shape[1], width)
    return xp.take(xp.take(array2d, rows, axis=0), cols, axis=1)


def _grid_size(grid: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(grid, int):
        return grid, grid
    return _out_size(grid, "downsample_mask")


def downsample_mask(mask: Array, grid: int | Sequence[int]) -> Array:
    """Doc §5: a reference mask (R x R bool, R = h * patch) to the h x w patch grid.

    Bilinear (align_corners=False) > 0.5; if that is empty, nearest > 0.5; if still empty, the
    single patch holding the mask pixels' centroid (centroid / (R // w), truncated). grid is
    h (square) or (h, w). Raises ReferenceMaskError when the mask itself is empty.

    Host syncs: three emptiness checks (the fallbacks are data dependent). This runs once per
    reference, not per target.
    """
    require("downsample_mask", "mask", mask, ndim=2, dtype="bool")
    xp = array_module(mask)
    h, w = _grid_size(grid)
    size_y, size_x = mask.shape
    if size_y % h or size_x % w or size_y // h != size_x // w:
        raise KernelInputError(
            f"downsample_mask: mask of shape {tuple(mask.shape)} is not a whole number of equal "
            f"patches on a {h} x {w} grid (expected (h * patch, w * patch))"
        )
    if not bool(mask.any()):
        raise ReferenceMaskError(f"reference mask of shape {tuple(mask.shape)} is empty: nothing to segment")
    down = resize_bilinear(mask, (h, w)) > 0.5
    if bool(down.any()):
        return down
    down = resize_nearest(mask, (h, w))
    if bool(down.any()):
        return down
    # Centroid fallback, as the reference: mean (y, x) of the mask pixels, divided by the
    # patch size R // w for both axes, truncated towards zero (coordinates are >= 0).
    ys, xs = xp.nonzero(mask)
    patch = xp.float32(size_x // w)
    cy = (ys.astype(xp.float64).mean().astype(xp.float32) / patch).astype(xp.int64)
    cx = (xs.astype(xp.float64).mean().astype(xp.float32) / patch).astype(xp.int64)
    down[cy, cx] = True
    return down


def _tap_range(i0: Array, i1: Array, low: int, high: int) -> tuple[int, int]:
    """[start, stop) of the output positions whose taps (i0, i1) reach a source index in
    [low, high]; i0 and i1 are nondecreasing, so these positions are one contiguous run."""
    xp = array_module(i0, i1)
    # The values searched for as 0-d arrays: CuPy's searchsorted takes only an ndarray `v`
    # (a Python int raises NotImplementedError there), NumPy takes either.
    low_v, high_v = xp.asarray(low, dtype=i1.dtype), xp.asarray(high, dtype=i0.dtype)
    start = int(xp.searchsorted(i1, low_v, side="left"))  # first position with i1 >= low
    stop = int(xp.searchsorted(i0, high_v, side="right"))  # past the last position with i0 <= high
    return start, stop


def _box(flags: Array) -> tuple[int, int] | None:
    """(first, last) index of the True entries of a 1-D bool array, None when there are none."""
    xp = array_module(flags)
    where = xp.nonzero(flags)[0]
    if where.shape[0] == 0:
        return None
    return int(where[0]), int(where[-1])


def _threshold_block(block: Array, offset: tuple[int, int], in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """resize_bilinear(mask, out_hw) > 0.5 for the in_hw bool mask that is `block` at `offset`
    (y, x) and False elsewhere, returned the same way: (out_block, out_offset), or None when no
    output pixel can be True.

    Output pixels whose four taps all miss the foreground's bounding box interpolate four zeros:
    exactly 0, never > 0.5. So only the run of output rows and of output columns whose taps reach
    the box is interpolated, with the same taps, weights and float32 operations per pixel as
    `resize_bilinear` (hence the same > 0.5 decisions). Host syncs: the box and the tap ends.
    """
    xp = array_module(block)
    rows, cols = _box(block.any(axis=1)), _box(block.any(axis=0))
    if rows is None or cols is None:
        return None
    oy, ox = offset
    r0, r1, wr0, wr1 = _linear_taps(xp, in_hw[0], out_hw[0])
    c0, c1, wc0, wc1 = _linear_taps(xp, in_hw[1], out_hw[1])
    y_start, y_stop = _tap_range(r0, r1, rows[0] + oy, rows[1] + oy)
    x_start, x_stop = _tap_range(c0, c1, cols[0] + ox, cols[1] + ox)
    if y_start >= y_stop or x_start >= x_stop:  # shrinking: no output tap reaches the box
        return None
    r0, r1, wr0, wr1 = r0[y_start:y_stop], r1[y_start:y_stop], wr0[y_start:y_stop], wr1[y_start:y_stop]
    c0, c1, wc0, wc1 = c0[x_start:x_stop], c1[x_start:x_stop], wc0[x_start:x_stop], wc1[x_start:x_stop]
    # The source window every kept tap reads (in or out of the box), zeros outside `block`.
    ya, yb, xa, xb = int(r0[0]), int(r1[-1]) + 1, int(c0[0]), int(c1[-1]) + 1
    x = xp.zeros((yb - ya, xb - xa), dtype=xp.float32)
    top, bottom = max(ya, oy), min(yb, oy + block.shape[0])
    left, right = max(xa, ox), min(xb, ox + block.shape[1])
    if top < bottom and left < right:
        x[top - ya : bottom - ya, left - xa : right - xa] = block[top - oy : bottom - oy, left - ox : right - ox]
    # resize_bilinear's operations on the window: along x, then along y, in place.
    columns = xp.take(x, c0 - xa, axis=1)
    columns *= wc0
    right_tap = xp.take(x, c1 - xa, axis=1)
    right_tap *= wc1
    columns += right_tap
    out = xp.take(columns, r0 - ya, axis=0)
    out *= wr0[:, None]
    below = xp.take(columns, r1 - ya, axis=0)
    below *= wr1[:, None]
    out += below
    return out > 0.5, (y_start, x_start)


def _place(found, out_hw: tuple[int, int], xp) -> Array:
    out = xp.zeros(out_hw, dtype=bool)
    if found is not None:
        block, (y, x) = found
        out[y : y + block.shape[0], x : x + block.shape[1]] = block
    return out


def threshold_bilinear(mask: Array, out_hw: Sequence[int]) -> Array:
    """resize_bilinear(mask, out_hw) > 0.5 for a bool mask, computed only where it can be True:
    the output rows and columns whose taps reach the foreground's bounding box (elsewhere the
    four taps are zeros). Same taps, weights and float32 operations per pixel as
    `resize_bilinear`, hence the same decisions."""
    require("threshold_bilinear", "mask", mask, ndim=2, dtype="bool")
    xp = array_module(mask)
    out_hw = _out_size(out_hw, "threshold_bilinear")
    return _place(_threshold_block(mask, (0, 0), tuple(mask.shape), out_hw), out_hw, xp)


def upsample_mask(patch_mask: Array, resolution: int, original_size: Sequence[int]) -> Array:
    """Doc §9: patch mask (h, w) bool -> bilinear to R x R, > 0.5 -> bilinear to (H, W), > 0.5.

    Both steps as `threshold_bilinear`, the second reading only the block the first produced
    (the R x R mask is False outside it): float work only around the foreground."""
    require("upsample_mask", "patch_mask", patch_mask, ndim=2, dtype="bool")
    if int(resolution) < 1:
        raise KernelInputError(f"upsample_mask: resolution must be positive, got {resolution!r}")
    xp = array_module(patch_mask)
    out_hw = _out_size(original_size, "upsample_mask")
    square = (int(resolution), int(resolution))
    found = _threshold_block(patch_mask, (0, 0), tuple(patch_mask.shape), square)
    if found is not None:
        found = _threshold_block(found[0], found[1], square, out_hw)
    return _place(found, out_hw, xp)
