"""The lattice's vertex table by sorting, for NumPy and CuPy alike (the GPU's path; on the CPU
the Numba hash table of kernels/lattice_numba.py builds the same table faster).

Composed array calls express the whole table: the distinct packed keys are `unique` of all
pixels' vertex keys (sorted, so vertex ids follow key order), a pixel's vertex id is the
inverse index, a neighbour is a `searchsorted` of key +- the direction's offset, and the splat
order (each vertex's entries in pixel order) is a stable argsort of the vertex ids.
"""

from __future__ import annotations

from insid3.kernels.arrays import Array, array_module
from insid3.kernels.lattice_geometry import direction_offsets


def sorted_vertex_table(keys: Array) -> tuple[Array, Array]:
    """(vid (N, d+1) int32, vertices (M,) int64 ascending) of packed keys (N, d+1)."""
    xp = array_module(keys)
    vertices, inverse = xp.unique(keys.reshape(-1), return_inverse=True)
    return inverse.reshape(keys.shape).astype(xp.int32), vertices


def sorted_neighbours(vertices: Array, d: int) -> Array:
    """(d+1, 2, M) int32: the "+" and "-" neighbour of every vertex per direction, -1 if absent."""
    xp = array_module(vertices)
    m = vertices.shape[0]
    out = xp.empty((d + 1, 2, m), dtype=xp.int32)
    for j, offset in enumerate(direction_offsets(d)):
        for side, wanted in enumerate((vertices + offset, vertices - offset)):
            at = xp.minimum(xp.searchsorted(vertices, wanted), m - 1)
            out[j, side] = xp.where(vertices[at] == wanted, at, -1).astype(xp.int32)
    return out


def splat_order(vid: Array, vertex_count: int) -> tuple[Array, Array]:
    """(entries, starts): the flat entries p * (d+1) + q of each vertex in pixel order, vertex v's
    being entries[starts[v]:starts[v + 1]] (a stable sort of the vertex ids)."""
    xp = array_module(vid)
    flat = vid.reshape(-1)
    entries = xp.argsort(flat, kind="stable").astype(xp.int32)
    starts = xp.zeros(vertex_count + 1, dtype=xp.int64)
    starts[1:] = xp.cumsum(xp.bincount(flat, minlength=vertex_count))
    return entries, starts
