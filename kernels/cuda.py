"""CuPy RawModule loader for the CUDA kernels in this folder (import-guarded: no CuPy, no kernels).

The .cu sources are compiled at run time by NVRTC through cupy.RawModule (CuPy caches the
binary); CMakeLists.txt compiles the same files with nvcc as a build-time check.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_THREADS = 256
_MAX_GRID_Y = 65535


@dataclass(frozen=True)
class LinkageKernels:
    """The kernels of linkage_reciprocal.cu with launchers that mirror the NumPy twins."""

    merge_rows_kernel: Any
    rows_argmin_kernel: Any

    def merge_rows(self, distances, first, second, sizes):
        """merge_rows of linkage_reciprocal.py: the (P, N) merged rows."""
        import cupy

        n, pairs = distances.shape[0], first.shape[0]
        if pairs > _MAX_GRID_Y:
            raise ValueError(f"{pairs} pairs in one round exceed the CUDA grid's y limit {_MAX_GRID_Y}")
        role = cupy.full(n, -1, dtype=cupy.int32)
        role[first] = cupy.arange(pairs, dtype=cupy.int32)
        role[second] = -2
        rows = cupy.empty((pairs, n), dtype=cupy.float32)
        grid = ((n + _THREADS - 1) // _THREADS, pairs)
        self.merge_rows_kernel(
            grid, (_THREADS,),
            (distances, np.int64(n), first, second, sizes, role, rows, np.int64(pairs)),
        )
        return rows

    def rows_argmin(self, distances, rows, nearest, nearest_distance) -> None:
        """rows_argmin of linkage_reciprocal.py: writes nearest[rows], nearest_distance[rows]."""
        count = rows.shape[0]
        if count == 0:
            return
        self.rows_argmin_kernel(
            (count,), (_THREADS,),
            (distances, np.int64(distances.shape[0]), rows, np.int64(count), nearest, nearest_distance),
        )


@functools.lru_cache(maxsize=1)
def linkage_kernels() -> LinkageKernels | None:
    """The compiled kernels, or None (with one warning) when CuPy or NVRTC cannot build them;
    callers then use the composed CuPy path, which computes the same values."""
    try:
        import cupy
    except ImportError:
        return None
    source = Path(__file__).with_name("linkage_reciprocal.cu").read_text()
    try:
        module = cupy.RawModule(code=source, options=("--std=c++14",))
        return LinkageKernels(
            merge_rows_kernel=module.get_function("insid3_merge_rows"),
            rows_argmin_kernel=module.get_function("insid3_rows_argmin"),
        )
    except Exception as error:  # NVRTC missing or failing: fall back, say so once
        warnings.warn(
            f"insid3 CUDA linkage kernels unavailable ({type(error).__name__}: {error}); "
            "using composed CuPy calls",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


# One thread per segment, adding its values one after the other from 0.0: the order of NumPy's
# bincount(weights=) (float64 additions, which NVRTC cannot contract and -ftz does not touch).
_ORDERED_SUMS_BODY = "double s = 0.0; for (long long j = 0; j < count; ++j) { s += values[start + j]; } total = s;"


@functools.lru_cache(maxsize=1)
def _ordered_sums_kernel() -> Any:
    import cupy

    return cupy.ElementwiseKernel(
        "int64 start, int64 count, raw float64 values", "float64 total", _ORDERED_SUMS_BODY, "insid3_ordered_sums"
    )


def ordered_sums(values, starts, counts):
    """(M,) float64 sums of the CuPy float64 `values` segment by segment (segment j: values[starts[j]
    : starts[j] + counts[j]]), each added in order from 0.0: no atomics, the same bits every run."""
    import cupy

    total = cupy.empty(counts.shape[0], dtype=cupy.float64)
    if counts.shape[0]:
        _ordered_sums_kernel()(starts.astype(cupy.int64), counts.astype(cupy.int64), values, total)
    return total
