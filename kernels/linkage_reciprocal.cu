// CUDA kernels for the reciprocal-nearest-neighbour average linkage (linkage_reciprocal.py).
//
// They replace composed CuPy calls of one merge round: the merged rows (two row gathers, a
// P x P block gather and ~10 elementwise launches with P x N temporaries) become one launch,
// and the nearest-neighbour search of the stale rows (an A x N gather + argmin + gather)
// becomes one launch that reads the matrix in place.
//
// Rounding contract, shared with the NumPy twins merge_rows / rows_argmin:
// every float op is an explicit round-to-nearest intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn),
// which nvcc/NVRTC never contract into FMAs, so the kernels and the twins produce the same bits.
// Built at run time by cupy.RawModule (NVRTC); CMakeLists.txt compiles it with nvcc to check it.

// No #include: NVRTC builds this without the toolkit headers on its include path.
#define INSID3_INF __int_as_float(0x7f800000)

// Lance-Williams row rule for average linkage: (n_a * d_a + n_b * d_b) / (n_a + n_b).
__device__ __forceinline__ float insid3_average(float n_a, float d_a, float n_b, float d_b, float total) {
    return __fdiv_rn(__fadd_rn(__fmul_rn(n_a, d_a), __fmul_rn(n_b, d_b)), total);
}

// rows[p, m] = distance from merged cluster p (first[p] + second[p]) to cluster m.
// role[m]: -1 m is not merged this round, -2 m is absorbed (a second), q >= 0 m = first[q].
// grid: (ceil(n / blockDim.x), pairs); one thread per (p, m). Reads `distances` only.
extern "C" __global__ void insid3_merge_rows(
    const float* __restrict__ distances, long long n,
    const long long* __restrict__ first, const long long* __restrict__ second,
    const float* __restrict__ sizes, const int* __restrict__ role,
    float* __restrict__ rows, long long pairs) {
    const long long m = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long p = blockIdx.y;
    if (m >= n || p >= pairs) return;
    const long long i = first[p], j = second[p];
    const float n_i = sizes[i], n_j = sizes[j];
    const float total = __fadd_rn(n_i, n_j);
    const int r = role[m];
    float value;
    if (r == -2) {
        value = INSID3_INF;
    } else if (r >= 0) {
        const long long q = r;
        if (q == p) {
            value = INSID3_INF;  // diagonal
        } else {
            // Canonical side: row rule with the pair whose first index is smaller (a), then
            // the column rule with the other pair (b), as merge_rows's `block`.
            const long long a = first[p] < first[q] ? p : q;
            const long long b = a == p ? q : p;
            const long long ia = first[a], ja = second[a], kb = first[b], lb = second[b];
            const float n_ia = sizes[ia], n_ja = sizes[ja], n_kb = sizes[kb], n_lb = sizes[lb];
            const float total_a = __fadd_rn(n_ia, n_ja), total_b = __fadd_rn(n_kb, n_lb);
            const float x = insid3_average(n_ia, distances[ia * n + kb], n_ja, distances[ja * n + kb], total_a);
            const float y = insid3_average(n_ia, distances[ia * n + lb], n_ja, distances[ja * n + lb], total_a);
            value = insid3_average(n_kb, x, n_lb, y, total_b);
        }
    } else {
        value = insid3_average(n_i, distances[i * n + m], n_j, distances[j * n + m], total);
    }
    rows[p * n + m] = value;
}

// For each listed row: nearest[row] = argmin over columns (smallest index on ties, as
// numpy/torch argmin), nearest_distance[row] = the minimum. One block per row; blockDim.x must
// be a power of two <= 1024 (the launcher uses 256).
extern "C" __global__ void insid3_rows_argmin(
    const float* __restrict__ distances, long long n,
    const long long* __restrict__ rows, long long count,
    long long* __restrict__ nearest, float* __restrict__ nearest_distance) {
    __shared__ float best_value[1024];
    __shared__ long long best_index[1024];
    if (blockIdx.x >= count) return;
    const long long row = rows[blockIdx.x];
    const float* line = distances + row * n;
    float value = INSID3_INF;
    long long index = n;  // sentinel: loses every tie against a real column
    for (long long m = threadIdx.x; m < n; m += blockDim.x) {
        const float d = line[m];
        if (d < value) { value = d; index = m; }  // columns visited in increasing order
    }
    best_value[threadIdx.x] = value;
    best_index[threadIdx.x] = index;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            const float other = best_value[threadIdx.x + stride];
            const long long other_index = best_index[threadIdx.x + stride];
            if (other < best_value[threadIdx.x] ||
                (other == best_value[threadIdx.x] && other_index < best_index[threadIdx.x])) {
                best_value[threadIdx.x] = other;
                best_index[threadIdx.x] = other_index;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        // A row of +inf only (every other cluster retired): numpy's argmin gives index 0.
        nearest[row] = best_index[0] < n ? best_index[0] : 0;
        nearest_distance[row] = best_value[0];
    }
}
