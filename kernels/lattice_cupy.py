"""The GPU's splat: one thread per lattice vertex summing its entries in pixel order (import-
guarded: only reached with CuPy arrays).

Composed calls cannot fix the order of a scatter-add (the library's CUDA build uses atomics,
whose order varies from run to run); the kernel of lattice_splat.cu sums each vertex's entries,
given by kernels/lattice_table.splat_order, in pixel order, so the GPU's splat equals the CPU's
bit for bit. The Numba twin is kernels/lattice_numba.splat_by_vertex.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from insid3.kernels.arrays import Array

_THREADS = 256


@functools.lru_cache(maxsize=1)
def _module():
    import cupy

    return cupy.RawModule(code=Path(__file__).with_name("lattice_splat.cu").read_text(), options=("--std=c++14",))


def splat_by_vertex(entries: Array, starts: Array, weights: Array, values: Array) -> Array:
    """(M, c) splat table: vertex v's sum of value * weight over its entries, in pixel order."""
    import cupy

    vertex_count = int(starts.shape[0]) - 1
    channels = int(values.shape[1])
    name = "insid3_splat_float32" if weights.dtype == cupy.float32 else "insid3_splat_float64"
    table = cupy.empty((vertex_count, channels), dtype=weights.dtype)
    blocks = (vertex_count + _THREADS - 1) // _THREADS
    _module().get_function(name)(
        (blocks,), (_THREADS,),
        (cupy.ascontiguousarray(entries), cupy.ascontiguousarray(starts), cupy.ascontiguousarray(weights),
         cupy.ascontiguousarray(values, dtype=weights.dtype), table, np.int64(vertex_count),
         np.int32(weights.shape[1]), np.int32(channels)),
    )
    return table
