"""The CPU's filtering on a permutohedral lattice (Numba): splat, blur, slice (docs/crf.md,
"The lattice", steps 7-9), in full or only where the input changed.

Arithmetic: the loops are written once and compiled per dtype. With float32 tables, products
and sums of two float32 values are float32 operations (Numba does not contract them into fused
multiply-adds without fastmath), and the blur's constants are double literals, so each blend is
computed in double and stored as float: the library's CUDA build. With float64 tables it is the
library's CPU build. Splat sums run in pixel order, the slice sums in vertex order q = 0..d.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Above this fraction of changed pixels a full pass (pixel-major splat) is cheaper than
# recomputing vertex by vertex; both give the same bits.
_FULL_PASS_FRACTION = 0.25


@njit(cache=True, nogil=True)
def splat_into(table, vid, weights, values):
    """table (M, c) = per vertex, sum of value * weight over pixels in order (q ascending)."""
    table[:] = 0
    for p in range(vid.shape[0]):
        for q in range(vid.shape[1]):
            v = vid[p, q]
            w = weights[p, q]
            for ch in range(values.shape[1]):
                table[v, ch] += values[p, ch] * w


@njit(cache=True, nogil=True)
def splat_by_vertex(entries, starts, weights, values, table, vertices, count):
    """table[v] for v in vertices[:count], each summed from zero over v's entries in pixel order
    (so equal to `splat_into`'s): the twin of the GPU's kernel (lattice_splat.cu)."""
    q_count = weights.shape[1]
    acc = np.zeros(values.shape[1], dtype=table.dtype)
    for i in range(count):
        v = vertices[i]
        acc[:] = 0
        for e in range(starts[v], starts[v + 1]):
            p = entries[e] // q_count
            w = weights[p, entries[e] - p * q_count]
            for ch in range(values.shape[1]):
                acc[ch] += values[p, ch] * w
        table[v] = acc


@njit(cache=True, nogil=True, inline="always")
def _blend(source, target, neighbours, j, k):
    """target[k] = 0.25 source[+ neighbour] + 0.5 source[k] + 0.25 source[- neighbour] in double
    (a missing neighbour is 0), stored in the table's dtype."""
    up = neighbours[j, 0, k]
    down = neighbours[j, 1, k]
    for ch in range(source.shape[1]):
        a = 0.0
        b = 0.0
        if up >= 0:
            a = source[up, ch]
        if down >= 0:
            b = source[down, ch]
        target[k, ch] = 0.25 * a + 0.5 * source[k, ch] + 0.25 * b


@njit(cache=True, nogil=True, inline="always")
def _slice_pixel(out, p, vid, weights, last, scale, acc):
    """out[p] = (sum over q of weight_q * last[vertex_q]) * scale[p]."""
    acc[:] = 0
    for q in range(vid.shape[1]):
        w = weights[p, q]
        v = vid[p, q]
        for ch in range(acc.shape[0]):
            acc[ch] += w * last[v, ch]
    for ch in range(acc.shape[0]):
        out[p, ch] = acc[ch] * scale[p]


@njit(cache=True, nogil=True)
def filter_pass(vid, weights, neighbours, scale, values, tables, out):
    """Splat into tables[0], one Jacobi [1 2 1]/4 pass per direction j = 0..d into tables[j+1],
    slice into out (N, c) times scale (all ones for the unnormalised homogeneous pass)."""
    splat_into(tables[0], vid, weights, values)
    for j in range(neighbours.shape[0]):
        for k in range(tables.shape[1]):
            _blend(tables[j], tables[j + 1], neighbours, j, k)
    acc = np.zeros(values.shape[1], dtype=tables.dtype)
    for p in range(vid.shape[0]):
        _slice_pixel(out, p, vid, weights, tables[neighbours.shape[0]], scale, acc)


@njit(cache=True, nogil=True)
def reciprocal(values):
    """1 / v computed in double and stored in the array's dtype (both builds' slice)."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = 1.0 / values[i]
    return out


@njit(cache=True, nogil=True)
def refilter(vid, weights, entries, starts, neighbours, scale, values, previous, tables, out, resliced):
    """Filter `values` (N, c), recomputing only what depends on pixels whose value differs from
    `previous` (NaN there forces everything). Bit for bit a full pass: every recomputed value goes
    through the same operations in the same order, every kept one has the same inputs as before:

        changed pixels -> their vertices' splat sums (from zero, pixel order)
        blur pass j    -> a dirty vertex and its two neighbours along j (the dirty set grows)
        slice          -> the pixels touching a dirty vertex of the last table

    tables (d+2, M, c): the splat, then the table after each blur pass. previous, tables, out
    and resliced (N,) bool (the pixels whose output was recomputed) are written in place."""
    n, q_count = vid.shape
    m = tables.shape[1]
    marked = np.zeros(m, dtype=np.bool_)
    dirty = np.empty(m, dtype=np.int32)
    count = 0
    changed_pixels = 0
    for p in range(n):
        changed = False
        for ch in range(values.shape[1]):
            if values[p, ch] != previous[p, ch]:
                changed = True
            previous[p, ch] = values[p, ch]
        if changed:
            changed_pixels += 1
            for q in range(q_count):
                v = vid[p, q]
                if not marked[v]:
                    marked[v] = True
                    dirty[count] = v
                    count += 1
    if changed_pixels > _FULL_PASS_FRACTION * n:
        filter_pass(vid, weights, neighbours, scale, values, tables, out)
        resliced[:] = True
        return
    resliced[:] = False
    if count == 0:
        return
    splat_by_vertex(entries, starts, weights, values, tables[0], dirty, count)
    for j in range(neighbours.shape[0]):
        before = count
        for i in range(before):
            for side in range(2):
                u = neighbours[j, side, dirty[i]]
                if u >= 0 and not marked[u]:
                    marked[u] = True
                    dirty[count] = u
                    count += 1
        for i in range(count):
            _blend(tables[j], tables[j + 1], neighbours, j, dirty[i])
    last = tables[neighbours.shape[0]]
    acc = np.zeros(values.shape[1], dtype=tables.dtype)
    for i in range(count):
        v = dirty[i]
        for e in range(starts[v], starts[v + 1]):
            p = entries[e] // q_count
            if not resliced[p]:
                resliced[p] = True
                _slice_pixel(out, p, vid, weights, last, scale, acc)
