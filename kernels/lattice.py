"""The permutohedral lattice filter of the authors' dense-CRF library, built once per image and
reused for every filtering (docs/crf.md, "The lattice").

    lattice = build_lattice(positions, "float32")     # positions (N, d): features / std
    smooth = LatticeFilter(lattice)                    # one per lattice and value layout
    out = smooth(values)                               # (N, c): normalised Gaussian filtering

One algorithm, two constructions. method="numba" (the CPU's): each pixel's simplex and weights,
a hash table of the vertices and the splat order in Numba (kernels/lattice_numba_build.py), and
splat, blur and slice as Numba loops (kernels/lattice_numba.py). method="arrays" (the GPU's, the
only one for CuPy): the same geometry as array code (kernels/lattice_geometry.py, held equal to
the Numba one bit for bit), the vertices by a sort (kernels/lattice_table.py), one CUDA kernel
for the splat (each vertex's sum in pixel order, which composed calls cannot fix) and composed
calls for blur and slice. On NumPy, method="arrays" runs all of that with the Numba twin of the
splat kernel, so the CPU tests exercise the GPU's lines. The two number the vertices
differently, which changes no result.

The homogeneous channel's splat, blur and reciprocal depend on the image only: computed at build
time, bit for bit what the library recomputes on every call. With method="numba" a filter also
remembers its last input and recomputes only what depends on the pixels that changed (exact; see
`lattice_numba.refilter`): after the CRF's first steps only pixels near the mask's boundary change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from insid3.kernels import lattice_numba as nb
from insid3.kernels import lattice_numba_build as nbb
from insid3.kernels.arrays import Array, KernelInputError, array_module, require
from insid3.kernels.lattice_geometry import (
    MAX_DIMS,
    Precision,
    check_key_range,
    check_precision,
    direction_offsets,
    dtype_of,
    scale_factors,
    simplex_geometry,
)
from insid3.kernels.lattice_table import sorted_neighbours, sorted_vertex_table, splat_order

Method = Literal["numba", "arrays"]
METHODS = ("numba", "arrays")


@dataclass(frozen=True)
class Lattice:
    """One image's lattice: (N pixels, d features, M vertices)."""

    precision: Precision
    vid: Array  # (N, d+1) int32: the vertex of each pixel's simplex corner q
    weights: Array  # (N, d+1) float: barycentric weights (float32 or float64)
    neighbours: Array  # (d+1, 2, M) int32: "+" / "-" neighbour along direction j, -1 if absent
    entries: Array  # (N (d+1),) int32: flat entries p (d+1) + q grouped by vertex, pixel order
    starts: Array  # (M+1,) int64: vertex v's entries are entries[starts[v]:starts[v+1]]
    scale: Array  # (N,) float: 1 / (blurred homogeneous weight sliced at the pixel)
    method: Method

    @property
    def pixels(self) -> int:
        return int(self.vid.shape[0])

    @property
    def vertex_count(self) -> int:
        return int(self.neighbours.shape[2])

    @property
    def dtype(self):
        return self.weights.dtype


def _numba_tables(positions: np.ndarray, precision: Precision):
    """The CPU's construction: Numba geometry, hash table, counting-sort splat order."""
    n, d = positions.shape
    positions = np.ascontiguousarray(positions, dtype=dtype_of(precision))
    scale = np.asarray(scale_factors(d, precision), dtype=dtype_of(precision))
    keys = np.empty((n, d + 1), dtype=np.int64)
    weights = np.empty((n, d + 1), dtype=dtype_of(precision))
    check_key_range(nbb.simplex_geometry(positions, scale, keys, weights), d)
    vid, vertices, table_keys, table_ids, shift = nbb.vertex_table(keys)
    offsets = np.asarray(direction_offsets(d), dtype=np.int64)
    neighbours = nbb.neighbour_table(vertices, offsets, table_keys, table_ids, shift)
    return vid, weights, neighbours, *nbb.splat_order(vid, vertices.shape[0])


def _array_tables(positions: Array, precision: Precision):
    """The GPU's construction, in composed array calls (runs on NumPy too)."""
    keys, weights = simplex_geometry(positions, precision)
    vid, vertices = sorted_vertex_table(keys)
    return vid, weights, sorted_neighbours(vertices, positions.shape[1]), *splat_order(vid, vertices.shape[0])


def build_lattice(positions: Array, precision: Precision = "float32", method: Method | None = None) -> Lattice:
    """The lattice of positions (N, d), d <= 5, in the arithmetic of the library's CUDA build
    ("float32") or CPU build ("float64"). method: "numba" (the CPU's, default for NumPy) or
    "arrays" (the GPU's, the only one for CuPy)."""
    require("build_lattice", "positions", positions, ndim=2)
    check_precision(precision)
    xp = array_module(positions)
    if positions.shape[0] == 0:
        raise KernelInputError("build_lattice: no positions")
    method = method or ("numba" if xp is np else "arrays")
    if method not in METHODS or (method == "numba" and xp is not np):
        raise KernelInputError(
            f"build_lattice: method must be 'arrays' for CuPy, one of {METHODS} for NumPy, got {method!r}"
        )
    if not 1 <= positions.shape[1] <= MAX_DIMS:
        raise KernelInputError(f"build_lattice: positions must have 1..{MAX_DIMS} features, got {positions.shape[1]}")
    build = _numba_tables if method == "numba" else _array_tables
    vid, weights, neighbours, entries, starts = build(positions, precision)
    ones = xp.ones(vid.shape[0], weights.dtype)
    partial = Lattice(precision, vid, weights, neighbours, entries, starts, ones, method)
    homogeneous = _full_filter(partial, ones[:, None], scale=ones)[:, 0]
    if xp is np:
        scale = nb.reciprocal(homogeneous)
    else:
        scale = (1.0 / homogeneous.astype(xp.float64)).astype(weights.dtype)
    return Lattice(precision, vid, weights, neighbours, entries, starts, scale, method)


def _array_filter(lattice: Lattice, values: Array, scale: Array) -> Array:
    """The GPU's pass: splat by vertex (its CUDA kernel, or the Numba twin on NumPy), then the
    blur and slice as array calls: a zero row stands for a missing neighbour, each blend is
    computed in double and stored in the table's dtype (a no-op for float64)."""
    xp = array_module(values)
    if xp is np:
        table = np.empty((lattice.vertex_count, values.shape[1]), dtype=lattice.dtype)
        every = np.arange(lattice.vertex_count, dtype=np.int32)
        nb.splat_by_vertex(lattice.entries, lattice.starts, lattice.weights, values, table, every, every.shape[0])
    else:
        from insid3.kernels.lattice_cupy import splat_by_vertex

        table = splat_by_vertex(lattice.entries, lattice.starts, lattice.weights, values)
    padded = xp.concatenate([table, xp.zeros((1, table.shape[1]), dtype=table.dtype)])
    missing = lattice.vertex_count
    for j in range(lattice.neighbours.shape[0]):
        up = xp.where(lattice.neighbours[j, 0] >= 0, lattice.neighbours[j, 0], missing)
        down = xp.where(lattice.neighbours[j, 1] >= 0, lattice.neighbours[j, 1], missing)
        wide = padded.astype(xp.float64)
        blended = 0.25 * wide[up] + 0.5 * wide[:-1] + 0.25 * wide[down]
        padded = xp.concatenate([blended.astype(table.dtype), padded[-1:]])
    sums = xp.zeros((lattice.pixels, table.shape[1]), dtype=table.dtype)
    for q in range(lattice.vid.shape[1]):
        sums = sums + lattice.weights[:, q, None] * padded[lattice.vid[:, q]]
    return sums * scale[:, None]


def _full_filter(lattice: Lattice, values: Array, scale: Array | None = None) -> Array:
    """Splat, blur, slice, times `scale` (default the lattice's: the normalisation)."""
    scale = lattice.scale if scale is None else scale
    if lattice.method == "arrays":
        return _array_filter(lattice, values, scale)
    tables = np.empty((lattice.neighbours.shape[0] + 1, lattice.vertex_count, values.shape[1]), lattice.dtype)
    out = np.empty(values.shape, dtype=lattice.dtype)
    nb.filter_pass(lattice.vid, lattice.weights, lattice.neighbours, scale, values, tables, out)
    return out


class LatticeFilter:
    """Normalised filtering of (N, c) values on one lattice. With the Numba lattice each call
    recomputes only what the pixels changed since the previous call touch, bit for bit the same
    as `full` (lattice_numba.refilter). `recomputed`: the (N,) flags of the pixels whose output
    the last call recomputed, or None when it recomputed every pixel."""

    def __init__(self, lattice: Lattice, *, incremental: bool = True) -> None:
        self.lattice = lattice
        self.incremental = incremental and lattice.method == "numba"
        self._state: tuple[np.ndarray, ...] | None = None
        self.recomputed: Array | None = None

    def full(self, values: Array) -> Array:
        return _full_filter(self.lattice, self._checked(values))

    def __call__(self, values: Array) -> Array:
        values = self._checked(values)
        if not self.incremental:
            self.recomputed = None
            return _full_filter(self.lattice, values)
        lattice = self.lattice
        if self._state is None or self._state[0].shape != values.shape:
            self._state = (
                np.full(values.shape, np.nan, dtype=lattice.dtype),  # the previous input: none
                np.empty((lattice.neighbours.shape[0] + 1, lattice.vertex_count, values.shape[1]), lattice.dtype),
                np.empty(values.shape, dtype=lattice.dtype),
                np.empty(values.shape[0], dtype=bool),
            )
        previous, tables, out, resliced = self._state
        nb.refilter(lattice.vid, lattice.weights, lattice.entries, lattice.starts,
                    lattice.neighbours, lattice.scale, values, previous, tables, out, resliced)
        self.recomputed = resliced.copy()
        return out.copy()

    def _checked(self, values: Array) -> Array:
        require("LatticeFilter", "values", values, ndim=2)
        if values.shape[0] != self.lattice.pixels:
            raise KernelInputError(
                f"LatticeFilter: values have {values.shape[0]} rows, the lattice {self.lattice.pixels} pixels"
            )
        xp = array_module(values)
        return xp.ascontiguousarray(values.astype(self.lattice.dtype, copy=False))
