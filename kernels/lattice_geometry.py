"""Where each pixel sits in the permutohedral lattice: its simplex's d+1 vertices and its
barycentric weights (docs/crf.md, "The lattice", steps 1-6), for NumPy and CuPy alike.

Per pixel and branch-free, so it is written once over whole arrays: the GPU runs these lines,
and so does the CPU (the Numba part of the CPU path starts at the vertex table). Every rounding
is where the library's build rounds (docs/crf.md, "Arithmetic"):

    "float32"  the CUDA build the authors ran: float32, except the products by the double
               literal 1/(d+1), computed in double and stored as float;
    "float64"  the CPU build: double, except the elevation's cf and i * cf, kept as float.

Each of NumPy's and CuPy's element-wise operations rounds once (no fused multiply-add across
operations), so writing one operation per C operation reproduces the C code bit for bit.

Vertices are packed into one int64: coordinate i (|value| < 2048 - (d+1)) in bits 12i..12i+11 with
an offset of 2048. Only the first d coordinates are stored (the last is implied by the zero sum),
so d <= 5 fits; the CRF's kernels have d = 2 (spatial) and d = 5 (bilateral).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from insid3.kernels.arrays import Array, KernelInputError, array_module, require

Precision = Literal["float32", "float64"]
PRECISIONS = ("float32", "float64")
MAX_DIMS = 5
KEY_BITS = 12
KEY_OFFSET = 1 << (KEY_BITS - 1)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise KernelInputError(f"lattice precision must be one of {PRECISIONS}, got {precision!r}")


def check_key_range(extent: int, d: int) -> None:
    """Refuse positions whose remainder-0 coordinates (largest |value| `extent`) would overflow a
    packed key field once a vertex (+- d+1) and its neighbours (+- d) are formed."""
    if extent + 2 * d + 1 >= KEY_OFFSET:
        raise KernelInputError(
            f"lattice coordinates reach {extent}, beyond the packed keys' {KEY_OFFSET - 2 * d - 2}: "
            "positions are too far from the origin"
        )


def dtype_of(precision: Precision):
    return np.float32 if precision == "float32" else np.float64


def scale_factors(d: int, precision: Precision) -> list:
    """sf_i = (d+1) sqrt(2/3) / sqrt((i+1)(i+2)), i < d, computed as the build computes it."""
    f = np.float32
    if precision == "float32":
        inv_std = f(f(d + 1) * f(math.sqrt(f(f(2.0) / f(3.0)))))
        return [f(f(f(1.0) / f(math.sqrt(f(f(i + 1) * f(i + 2))))) * inv_std) for i in range(d)]
    inv_std = (d + 1) * math.sqrt(2.0 / 3.0)
    return [np.float64(1.0 / math.sqrt((i + 1) * (i + 2)) * inv_std) for i in range(d)]


def direction_offsets(d: int) -> list[int]:
    """Packed-key offset of the "+" neighbour along each lattice direction j = 0..d: +1 on every
    stored coordinate, except coordinate j (j < d), which moves by -d. The "-" neighbour is the
    key minus the same offset."""
    ones = sum(1 << (KEY_BITS * i) for i in range(d))
    return [ones - ((d + 1) << (KEY_BITS * j)) if j < d else ones for j in range(d + 1)]


def _elevate(xp, positions: Array, precision: Precision) -> list:
    """Step 2: the d+1 hyperplane coordinates of every pixel, each an (N,) array."""
    n, d = positions.shape
    scale = scale_factors(d, precision)
    f32 = xp.float32
    elevated = [None] * (d + 1)
    total = xp.zeros(n, dtype=dtype_of(precision))
    for i in range(d, 0, -1):
        if precision == "float32":
            cf = positions[:, i - 1] * scale[i - 1]
            elevated[i] = total - f32(i) * cf
            total = total + cf
        else:
            cf = (positions[:, i - 1] * scale[i - 1]).astype(f32)
            elevated[i] = total - (f32(i) * cf).astype(xp.float64)
            total = total + cf.astype(xp.float64)
    elevated[0] = total
    return elevated


def _to_build(xp, values: Array, precision: Precision) -> Array:
    """A double product stored in the build's type."""
    return values.astype(xp.float32) if precision == "float32" else values


def simplex_geometry(positions: Array, precision: Precision) -> tuple[Array, Array]:
    """(keys, weights) of every pixel: keys (N, d+1) int64, the packed vertex q = 0..d of its
    enclosing simplex; weights (N, d+1), its barycentric weights in the build's dtype."""
    require("simplex_geometry", "positions", positions, ndim=2)
    check_precision(precision)
    xp = array_module(positions)
    n, d = positions.shape
    if not 1 <= d <= MAX_DIMS:
        raise KernelInputError(f"simplex_geometry: positions must have 1..{MAX_DIMS} features, got {d}")
    positions = positions.astype(dtype_of(precision), copy=False)
    dtype = dtype_of(precision)
    inv = 1.0 / (d + 1)
    elevated = _elevate(xp, positions, precision)

    # Step 3: nearest remainder-0 point per coordinate (a tie goes down), sigma its coordinate sum / (d+1).
    rem0 = []
    for e in elevated:
        v = _to_build(xp, e.astype(xp.float64) * inv, precision)
        up, down = xp.ceil(v) * dtype(d + 1), xp.floor(v) * dtype(d + 1)
        rem0.append(xp.where(up - e < e - down, up, down).astype(xp.int32))
    sigma = sum(rem0) // (d + 1)

    # Step 4: rank of each coordinate's remainder, descending, the earlier index winning a tie.
    delta = [e - r.astype(dtype) for e, r in zip(elevated, rem0)]
    rank = [xp.zeros(n, dtype=xp.int32) for _ in range(d + 1)]
    for i in range(d):
        for j in range(i + 1, d + 1):
            below = delta[i] < delta[j]
            rank[i] += below
            rank[j] += ~below
    for i in range(d + 1):
        rank[i] += sigma
        low, high = rank[i] < 0, rank[i] > d
        rank[i] += (d + 1) * (low.astype(xp.int32) - high.astype(xp.int32))
        rem0[i] += (d + 1) * (low.astype(xp.int32) - high.astype(xp.int32))

    # Step 5: barycentric weights, accumulated in coordinate order as the C loop does.
    bary = xp.zeros((d + 2, n), dtype=dtype)
    columns = xp.arange(n)
    for i in range(d + 1):
        t = _to_build(xp, (elevated[i] - rem0[i].astype(dtype)).astype(xp.float64) * inv, precision)
        slot = d - rank[i]
        bary[slot, columns] = bary[slot, columns] + t
        bary[slot + 1, columns] = bary[slot + 1, columns] - t
    bary[0] = _to_build(xp, bary[0].astype(xp.float64) + (1.0 + bary[d + 1].astype(xp.float64)), precision)

    # Step 6: vertex q = rem0 + q, minus d+1 where rank > d - q; packed (first d coordinates).
    check_key_range(max(int(xp.abs(r).max()) for r in rem0[:d]), d)
    keys = xp.zeros((n, d + 1), dtype=xp.int64)
    for q in range(d + 1):
        for i in range(d):
            coordinate = rem0[i] + q - (d + 1) * (rank[i] > d - q).astype(xp.int32)
            keys[:, q] += (coordinate.astype(xp.int64) + KEY_OFFSET) << (KEY_BITS * i)
    return keys, xp.ascontiguousarray(bary[: d + 1].T)


def spatial_positions(xp, height: int, width: int, std: float, precision: Precision) -> Array:
    """(N, 2) = (row / std, column / std), row-major; std reaches the library as a C float."""
    check_precision(precision)
    rows, cols = xp.divmod(xp.arange(height * width, dtype=xp.int64), width)
    if precision == "float32":
        std32 = xp.float32(std)
        return xp.stack([rows.astype(xp.float32) / std32, cols.astype(xp.float32) / std32], axis=1)
    std64 = float(np.float32(std))
    return xp.stack([rows / std64, cols / std64], axis=1)


def bilateral_positions(guide: Array, spatial_std: float, colour_std: float, precision: Precision) -> Array:
    """(N, 5) = (row, column) / spatial_std and (R, G, B) / colour_std for a (3, H, W) float32
    guide image in [0, 1]."""
    require("bilateral_positions", "guide", guide, ndim=3, dtype="float32")
    xp = array_module(guide)
    _, height, width = guide.shape
    xy = spatial_positions(xp, height, width, spatial_std, precision)
    rgb = guide.reshape(3, -1).T
    if precision == "float32":
        colour = rgb / xp.float32(colour_std)
    else:
        colour = rgb.astype(xp.float64) / float(np.float32(colour_std))
    return xp.concatenate([xy, colour], axis=1)
