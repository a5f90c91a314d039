// The permutohedral lattice's splat on the GPU (kernels/lattice_cupy.py loads this file).
//
// One thread per lattice vertex sums weight * value over the vertex's entries in pixel order
// (kernels/lattice_table.splat_order): the CPU's order, so both give the same bits; the
// library's CUDA build scatters with atomics instead, in no fixed order. Products and sums use
// the round-to-nearest intrinsics, which are never contracted into fused multiply-adds. One
// exception in float32: CuPy compiles every kernel with -ftz=true, so a denormal input or product
// (below 2^-126) counts as zero here and not on the CPU (float64 is not flushed); the resulting
// tolerance on the refined mask is stated and tested in tests/kernels/test_crf_kernels.py.
// The Numba twin is kernels/lattice_numba.splat_by_vertex.

__device__ __forceinline__ float insid3_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float insid3_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double insid3_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double insid3_add(double a, double b) { return __dadd_rn(a, b); }

template <typename T>
__device__ void insid3_splat(const int* entries, const long long* starts, const T* weights,
                             const T* values, T* table, long long vertex_count, int q_count,
                             int channels) {
    const long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= vertex_count) return;
    for (int ch = 0; ch < channels; ++ch) {
        T acc = 0;
        for (long long e = starts[v]; e < starts[v + 1]; ++e) {
            const long long entry = entries[e];
            const long long pixel = entry / q_count;
            acc = insid3_add(acc, insid3_mul(values[pixel * channels + ch], weights[entry]));
        }
        table[v * channels + ch] = acc;
    }
}

extern "C" __global__ void insid3_splat_float32(const int* entries, const long long* starts,
                                                const float* weights, const float* values,
                                                float* table, long long vertex_count, int q_count,
                                                int channels) {
    insid3_splat<float>(entries, starts, weights, values, table, vertex_count, q_count, channels);
}

extern "C" __global__ void insid3_splat_float64(const int* entries, const long long* starts,
                                                const double* weights, const double* values,
                                                double* table, long long vertex_count, int q_count,
                                                int channels) {
    insid3_splat<double>(entries, starts, weights, values, table, vertex_count, q_count, channels);
}
