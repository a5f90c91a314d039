"""The CPU's construction of the permutohedral lattice (Numba): each pixel's simplex and
weights, the vertex table, the neighbours along the lattice directions, the splat order
(docs/crf.md, "The lattice", steps 1-6).

The geometry is kernels/lattice_geometry.simplex_geometry pixel by pixel (the tests hold the two
equal bit for bit). The vertex table is an open-addressing hash over the packed keys, vertices
numbered in order of first appearance, doubling (every key rehashed) when half full; the
numbering changes no result (the blur reads only the previous table, each splat sum runs in
pixel order).
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
                # lattice_geometry's KEY_OFFSET and KEY_BITS, written out: Numba's disk cache would not
                # notice a change to an imported constant (the geometry test holds the keys equal).
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
