"""The permutohedral lattice filter of the authors' dense-CRF library, transcribed as plain loops.

What the refinement's two Gaussian filters compute (docs/crf.md, "The lattice"): every pixel's
position is lifted onto the hyperplane of R^(d+1) whose coordinates sum to zero, rounded to the
enclosing simplex of the permutohedral lattice, its values (plus a homogeneous 1) are splatted
onto the simplex's d+1 vertices with barycentric weights, blurred with [1 2 1]/4 along each of
the d+1 lattice directions, sliced back with the same weights and divided by the blurred
homogeneous weight.

This is the oracle, not the engine: one pixel at a time, one Python dict for the lattice, the
lattice rebuilt on every call (as the library does), and every rounding written out as a cast
to the C type the library computes in. Two arithmetics (docs/crf.md, "Arithmetic"):

    "float32"  the library's CUDA build, which the authors ran: float32 throughout, with the
               products by the double literal 1/(d+1) and the blur's double constants
               computed in double and stored as float;
    "float64"  its CPU build (with the hash-table fix): double throughout, except the
               elevation's `cf` and `i * cf`, which the C code keeps as float.

Inputs and outputs are torch tensors (the transcription's convention); inside, NumPy scalars
carry float32 arithmetic and Python floats carry double arithmetic.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Precision = Literal["float32", "float64"]
F32 = np.float32


def _scale_factors(d: int, precision: Precision) -> list:
    """sf_i = (d+1) sqrt(2/3) / sqrt((i+1)(i+2)), in the build's arithmetic."""
    if precision == "float32":
        inv_std = F32(F32(d + 1) * F32(math.sqrt(F32(F32(2.0) / F32(3.0)))))
        return [F32(F32(F32(1.0) / F32(math.sqrt(F32(F32(i + 1) * F32(i + 2))))) * inv_std) for i in range(d)]
    inv_std = (d + 1) * math.sqrt(2.0 / 3.0)
    return [1.0 / math.sqrt((i + 1) * (i + 2)) * inv_std for i in range(d)]


def _elevate(position, scale: list, precision: Precision) -> list:
    """Step 2: the position on the hyperplane sum = 0 of R^(d+1)."""
    d = len(scale)
    elevated = [None] * (d + 1)
    if precision == "float32":
        total = F32(0.0)
        for i in range(d, 0, -1):
            cf = F32(F32(position[i - 1]) * scale[i - 1])
            elevated[i] = F32(total - F32(F32(i) * cf))
            total = F32(total + cf)
    else:  # the CPU build declares cf a float and multiplies it by the int i as floats
        total = 0.0
        for i in range(d, 0, -1):
            cf = F32(float(position[i - 1]) * scale[i - 1])
            elevated[i] = total - float(F32(F32(i) * cf))
            total = total + float(cf)
    elevated[0] = total
    return elevated


def _simplex(elevated: list, precision: Precision) -> tuple[list, list, list]:
    """Steps 3-5: remainder-0 point, rank of each coordinate, barycentric weights b[0..d]."""
    d = len(elevated) - 1
    inv = 1.0 / (d + 1)  # a double literal in both builds
    cast = F32 if precision == "float32" else float
    rem0 = []
    for e in elevated:
        v = cast(float(e) * inv)
        up, down = cast(math.ceil(v) * (d + 1)), cast(math.floor(v) * (d + 1))
        rem0.append(int(up) if cast(up - e) < cast(e - down) else int(down))
    sigma = sum(rem0) // (d + 1)  # an exact integer: the rounded point sums to a multiple of d+1
    rank = [0] * (d + 1)
    for i in range(d):
        di = cast(elevated[i] - cast(rem0[i]))
        for j in range(i + 1, d + 1):
            if di < cast(elevated[j] - cast(rem0[j])):
                rank[i] += 1
            else:
                rank[j] += 1
    for i in range(d + 1):
        rank[i] += sigma
        if rank[i] < 0:
            rank[i] += d + 1
            rem0[i] += d + 1
        elif rank[i] > d:
            rank[i] -= d + 1
            rem0[i] -= d + 1
    bary = [cast(0.0)] * (d + 2)
    for i in range(d + 1):
        t = cast(float(cast(elevated[i] - cast(rem0[i]))) * inv)
        bary[d - rank[i]] = cast(bary[d - rank[i]] + t)
        bary[d - rank[i] + 1] = cast(bary[d - rank[i] + 1] - t)
    bary[0] = cast(float(bary[0]) + (1.0 + float(bary[d + 1])))
    return rem0, rank, bary[: d + 1]


def _vertex_keys(rem0: list, rank: list) -> list[tuple[int, ...]]:
    """Step 6: the d stored coordinates of each of the simplex's d+1 vertices, q = 0..d."""
    d = len(rem0) - 1
    return [tuple(rem0[i] + q - (d + 1) * (rank[i] > d - q) for i in range(d)) for q in range(d + 1)]


def permutohedral_filter(values: torch.Tensor, positions: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Normalised lattice filtering of values (N, c) at positions (N, d), pixel order.

    Returns (N, c) in the build's dtype (float32 or float64). Deterministic: each vertex's splat
    sum runs in pixel order, as the CPU build does (the CUDA build's atomics have no fixed order).
    """
    cast = F32 if precision == "float32" else float
    vals = values.detach().cpu().numpy()
    pos = positions.detach().cpu().numpy()
    n, c = vals.shape
    d = pos.shape[1]
    scale = _scale_factors(d, precision)

    # Splat (step 7): pixel-major, vertices q ascending; the last channel is the homogeneous 1.
    table: dict[tuple[int, ...], list] = {}
    matrix = []  # per pixel: [(key, weight)] for slicing
    for p in range(n):
        rem0, rank, bary = _simplex(_elevate(pos[p], scale, precision), precision)
        entries = list(zip(_vertex_keys(rem0, rank), bary))
        for key, weight in entries:
            cell = table.setdefault(key, [cast(0.0)] * (c + 1))
            for ch in range(c):
                cell[ch] = cast(cell[ch] + cast(cast(vals[p, ch]) * weight))
            cell[c] = cast(cell[c] + weight)
        matrix.append(entries)

    # Blur (step 8): one Jacobi [1 2 1]/4 pass per direction j = 0..d; missing neighbours are 0.
    zero = [cast(0.0)] * (c + 1)
    for j in range(d + 1):
        blurred = {}
        for key, cell in table.items():
            plus = tuple(k - d if i == j else k + 1 for i, k in enumerate(key))
            minus = tuple(k + d if i == j else k - 1 for i, k in enumerate(key))
            up, down = table.get(plus, zero), table.get(minus, zero)
            blurred[key] = [cast(0.25 * float(up[ch]) + 0.5 * float(cell[ch]) + 0.25 * float(down[ch]))
                            for ch in range(c + 1)]
        table = blurred

    # Slice (step 9) and normalise by the blurred homogeneous weight's reciprocal.
    out = np.zeros((n, c), dtype=np.float32 if precision == "float32" else np.float64)
    for p, entries in enumerate(matrix):
        acc = [cast(0.0)] * (c + 1)
        for key, weight in entries:
            cell = table[key]
            for ch in range(c + 1):
                acc[ch] = cast(acc[ch] + cast(weight * cell[ch]))
        scale_p = cast(1.0 / float(acc[c]))
        for ch in range(c):
            out[p, ch] = cast(acc[ch] * scale_p)
    return torch.from_numpy(out)


def spatial_positions(height: int, width: int, gamma: float, precision: Precision) -> torch.Tensor:
    """(N, 2) = (y / gamma, x / gamma), row-major; gamma reaches the kernel as a C float."""
    std = F32(gamma)
    ys, xs = np.divmod(np.arange(height * width), width)
    if precision == "float32":
        pos = np.stack([ys.astype(F32) / std, xs.astype(F32) / std], axis=1)
    else:
        pos = np.stack([ys / float(std), xs / float(std)], axis=1)
    return torch.from_numpy(pos)


def bilateral_positions(image: torch.Tensor, alpha: float, beta: float, precision: Precision) -> torch.Tensor:
    """(N, 5) = (y / alpha, x / alpha, R / beta, G / beta, B / beta) for a (3, H, W) image in [0, 1]."""
    _, height, width = image.shape
    xy = spatial_positions(height, width, alpha, precision)
    rgb = image.detach().cpu().numpy().reshape(3, -1).T.astype(np.float32)  # the guide is float32
    std = F32(beta)
    colour = rgb / std if precision == "float32" else rgb.astype(np.float64) / float(std)
    return torch.cat([xy, torch.from_numpy(colour)], dim=1)
