"""The CPU half of the permutohedral lattice (NumPy + Numba): the vertex table and the
splat / blur / slice loops (docs/crf.md, "The lattice", steps 7-9).

Arithmetic: the loops are written once and compiled per dtype. With float32 tables, products
and sums of two float32 values are float32 operations (Numba does not contract them into fused
multiply-adds without fastmath), and the blur's constants are double literals, so each blend is
computed in double and stored as float: the library's CUDA build. With float64 tables it is the
library's CPU build. Splat sums run in pixel order, the slice sums in vertex order q = 0..d.

The vertex table is an open-addressing hash over the packed keys of kernels/lattice_geometry.py,
vertices numbered in order of first appearance; the numbering changes no result (the blur reads
only the previous table, each splat sum runs in pixel order).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = np.int64(-1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _slot(key, mask, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> shift) & mask


@njit(cache=True, nogil=True)
def _find(table_keys, table_ids, key, shift):
    """The id stored for key, or -1."""
    mask = table_keys.shape[0] - 1
    h = _slot(key, mask, shift)
    while True:
        stored = table_keys[h]
        if stored == key:
            return table_ids[h]
        if stored == _EMPTY:
            return -1
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _rehash(vertices, count, bits):
    """A table of 2^bits slots holding vertices[:count] (id = index)."""
    size = 1 << bits
    shift = np.uint64(64 - bits)
    table_keys = np.full(size, _EMPTY, dtype=np.int64)
    table_ids = np.empty(size, dtype=np.int32)
    mask = size - 1
    for i in range(count):
        h = _slot(vertices[i], mask, shift)
        while table_keys[h] != _EMPTY:
            h = (h + 1) & mask
        table_keys[h] = vertices[i]
        table_ids[h] = i
    return table_keys, table_ids, shift


@njit(cache=True, nogil=True)
def vertex_table(keys):
    """Deduplicate packed keys (N, d+1) int64: (vid (N, d+1) int32, vertices (M,) int64, and the
    hash table (keys, ids, shift) for later lookups). Ids in order of first appearance; the table
    doubles (every key rehashed) whenever it is half full."""
    n, q_count = keys.shape
    bits = 15
    vertices = np.empty(1 << (bits - 1), dtype=np.int64)
    table_keys, table_ids, shift = _rehash(vertices, 0, bits)
    vid = np.empty((n, q_count), dtype=np.int32)
    count = 0
    for p in range(n):
        for q in range(q_count):
            key = keys[p, q]
            mask = table_keys.shape[0] - 1
            h = _slot(key, mask, shift)
            while True:
                stored = table_keys[h]
                if stored == key:
                    vid[p, q] = table_ids[h]
                    break
                if stored == _EMPTY:
                    table_keys[h] = key
                    table_ids[h] = count
                    vertices[count] = key
                    vid[p, q] = count
                    count += 1
                    if 2 * count >= table_keys.shape[0]:
                        bits += 1
                        grown = np.empty(1 << (bits - 1), dtype=np.int64)
                        grown[:count] = vertices[:count]
                        vertices = grown
                        table_keys, table_ids, shift = _rehash(vertices, count, bits)
                    break
                h = (h + 1) & mask
    return vid, vertices[:count].copy(), table_keys, table_ids, shift


@njit(cache=True, nogil=True)
def neighbour_table(vertices, offsets, table_keys, table_ids, shift):
    """(d+1, 2, M) int32: the "+" and "-" neighbour of every vertex along each direction, -1
    where the lattice has no such vertex."""
    m = vertices.shape[0]
    out = np.empty((offsets.shape[0], 2, m), dtype=np.int32)
    for j in range(offsets.shape[0]):
        for k in range(m):
            out[j, 0, k] = _find(table_keys, table_ids, vertices[k] + offsets[j], shift)
            out[j, 1, k] = _find(table_keys, table_ids, vertices[k] - offsets[j], shift)
    return out


@njit(cache=True, nogil=True)
def splat(vid, weights, values, vertex_count):
    """(M, c) sums of weight * value per vertex, pixel by pixel (q ascending)."""
    n, q_count = vid.shape
    c = values.shape[1]
    table = np.zeros((vertex_count, c), dtype=weights.dtype)
    for p in range(n):
        for q in range(q_count):
            v = vid[p, q]
            w = weights[p, q]
            for ch in range(c):
                table[v, ch] += values[p, ch] * w
    return table


@njit(cache=True, nogil=True)
def blur(table, neighbours):
    """One [1 2 1]/4 Jacobi pass per direction j = 0..d, in order; a missing neighbour is 0.
    Returns the last table (a new array; `table` is left as it was)."""
    m, c = table.shape
    current = table.copy()
    fresh = np.empty_like(table)
    for j in range(neighbours.shape[0]):
        for k in range(m):
            up = neighbours[j, 0, k]
            down = neighbours[j, 1, k]
            for ch in range(c):
                a = 0.0
                b = 0.0
                if up >= 0:
                    a = current[up, ch]
                if down >= 0:
                    b = current[down, ch]
                fresh[k, ch] = 0.25 * a + 0.5 * current[k, ch] + 0.25 * b
        current, fresh = fresh, current
    return current


@njit(cache=True, nogil=True)
def slice_sums(vid, weights, table):
    """(N, c): sum over q = 0..d of weight_q * table[vertex_q], per pixel."""
    n, q_count = vid.shape
    c = table.shape[1]
    out = np.zeros((n, c), dtype=table.dtype)
    for p in range(n):
        for q in range(q_count):
            v = vid[p, q]
            w = weights[p, q]
            for ch in range(c):
                out[p, ch] += w * table[v, ch]
    return out


@njit(cache=True, nogil=True)
def reciprocal(values):
    """1 / v computed in double and stored in the array's dtype (both builds' slice)."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = 1.0 / values[i]
    return out


@njit(cache=True, nogil=True)
def scale_rows(sums, scale):
    """sums[p, ch] * scale[p] in the dtype of both."""
    out = np.empty_like(sums)
    for p in range(sums.shape[0]):
        for ch in range(sums.shape[1]):
            out[p, ch] = sums[p, ch] * scale[p]
    return out


@njit(cache=True, nogil=True)
def splat_by_vertex(entries, starts, weights, values, table, vertices, count):
    """table[v] = the splat sum of vertex v, for v in vertices[:count], recomputed from zero over
    v's entries in pixel order (so equal to `splat`'s sum): the twin of the GPU's splat kernel."""
    q_count = weights.shape[1]
    c = values.shape[1]
    acc = np.zeros(c, dtype=table.dtype)
    for i in range(count):
        v = vertices[i]
        acc[:] = 0
        for e in range(starts[v], starts[v + 1]):
            p = entries[e] // q_count
            w = weights[p, entries[e] - p * q_count]
            for ch in range(c):
                acc[ch] += values[p, ch] * w
        for ch in range(c):
            table[v, ch] = acc[ch]


@njit(cache=True, nogil=True)
def refilter(vid, weights, entries, starts, neighbours, scale, values, previous, tables, out):
    """Filter `values` (N, c), recomputing only what depends on pixels whose value differs from
    `previous` (bit for bit; NaN in `previous` forces everything). Exact because every value it
    recomputes goes through the same operations in the same order as a full pass, and every value
    it keeps has inputs identical to the last call's:

        changed pixels -> their vertices' splat sums (from zero, pixel order)
        blur pass j    -> a vertex and its two neighbours along j (the dirty set grows by them)
        slice          -> the pixels touching a dirty vertex of the last table

    tables (d+2, M, c): the splat, then the table after each blur pass; previous, tables and out
    are updated in place. Returns the flags (N,) of the pixels whose output was recomputed."""
    n, q_count = vid.shape
    c = values.shape[1]
    m = tables.shape[1]
    marked = np.zeros(m, dtype=np.bool_)
    dirty = np.empty(m, dtype=np.int32)
    count = 0
    for p in range(n):
        changed = False
        for ch in range(c):
            if values[p, ch] != previous[p, ch]:
                changed = True
        if changed:
            for ch in range(c):
                previous[p, ch] = values[p, ch]
            for q in range(q_count):
                v = vid[p, q]
                if not marked[v]:
                    marked[v] = True
                    dirty[count] = v
                    count += 1
    resliced = np.zeros(n, dtype=np.bool_)
    if count == 0:
        return resliced
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
        source = tables[j]
        target = tables[j + 1]
        for i in range(count):
            k = dirty[i]
            up = neighbours[j, 0, k]
            down = neighbours[j, 1, k]
            for ch in range(c):
                a = 0.0
                b = 0.0
                if up >= 0:
                    a = source[up, ch]
                if down >= 0:
                    b = source[down, ch]
                target[k, ch] = 0.25 * a + 0.5 * source[k, ch] + 0.25 * b
    last = tables[neighbours.shape[0]]
    acc = np.zeros(c, dtype=tables.dtype)
    for i in range(count):
        v = dirty[i]
        for e in range(starts[v], starts[v + 1]):
            p = entries[e] // q_count
            if resliced[p]:
                continue
            resliced[p] = True
            acc[:] = 0
            for q in range(q_count):
                w = weights[p, q]
                for ch in range(c):
                    acc[ch] += w * last[vid[p, q], ch]
            for ch in range(c):
                out[p, ch] = acc[ch] * scale[p]
    return resliced


@njit(cache=True, nogil=True, inline="always")
def _held(buffer, value):
    """value stored in buffer's dtype: the rounding of a C assignment (one operation computed in
    double and stored as float equals the float operation: double holds the exact product or sum
    of two floats, or enough of it)."""
    buffer[0] = value
    return buffer[0]


@njit(cache=True, nogil=True)
def simplex_geometry(positions, scale, keys, weights):
    """kernels/lattice_geometry.simplex_geometry pixel by pixel, into keys (N, d+1) int64 and
    weights (N, d+1) (float32: the CUDA build's arithmetic; float64: the CPU build's). Each
    rounding is a store into a buffer of the build's type (`build`) or into a float32 buffer
    where even the CPU build keeps a C float (`single`). Returns the largest |remainder-0
    coordinate| among the stored ones, for the key-range check."""
    n, d = positions.shape
    build = np.empty(1, dtype=weights.dtype)
    single = np.empty(1, dtype=np.float32)
    elevated = np.empty(d + 1, dtype=weights.dtype)
    bary = np.empty(d + 2, dtype=weights.dtype)
    rem0 = np.empty(d + 1, dtype=np.int64)
    rank = np.empty(d + 1, dtype=np.int64)
    inv = 1.0 / (d + 1)
    extent = 0
    for p in range(n):
        total = _held(build, 0.0)
        for i in range(d, 0, -1):
            cf = _held(single, positions[p, i - 1] * scale[i - 1])
            elevated[i] = total - _held(single, np.float32(i) * cf)
            total = _held(build, total + cf)
        elevated[0] = total
        sigma = 0
        for i in range(d + 1):
            v = _held(build, elevated[i] * inv)
            up = np.ceil(v) * (d + 1)
            down = np.floor(v) * (d + 1)
            if _held(build, up - elevated[i]) < _held(build, elevated[i] - down):
                rem0[i] = np.int64(up)
            else:
                rem0[i] = np.int64(down)
            sigma += rem0[i]
        sigma //= d + 1
        rank[:] = 0
        for i in range(d):
            di = _held(build, elevated[i] - rem0[i])
            for j in range(i + 1, d + 1):
                if di < _held(build, elevated[j] - rem0[j]):
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
        bary[:] = 0
        for i in range(d + 1):
            t = _held(build, _held(build, elevated[i] - rem0[i]) * inv)
            bary[d - rank[i]] = bary[d - rank[i]] + t
            bary[d - rank[i] + 1] = bary[d - rank[i] + 1] - t
        bary[0] = bary[0] + (1.0 + bary[d + 1])
        for i in range(d):
            extent = max(extent, abs(rem0[i]))
        for q in range(d + 1):
            weights[p, q] = bary[q]
            key = np.int64(0)
            for i in range(d):
                coordinate = rem0[i] + q
                if rank[i] > d - q:
                    coordinate -= d + 1
                key += (coordinate + 2048) << (12 * i)
            keys[p, q] = key
    return extent


@njit(cache=True, nogil=True)
def splat_order(vid, vertex_count):
    """kernels/lattice_table.splat_order by a counting sort (stable: pixel order within a vertex)."""
    flat = vid.reshape(-1)
    starts = np.zeros(vertex_count + 1, dtype=np.int64)
    for e in range(flat.shape[0]):
        starts[flat[e] + 1] += 1
    for v in range(vertex_count):
        starts[v + 1] += starts[v]
    fill = starts[:-1].copy()
    entries = np.empty(flat.shape[0], dtype=np.int32)
    for e in range(flat.shape[0]):
        v = flat[e]
        entries[fill[v]] = e
        fill[v] += 1
    return entries, starts
