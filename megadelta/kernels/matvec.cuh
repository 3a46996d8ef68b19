// Batch-1 matrix-vector products: W is [n_rows, K] row-major bf16, x a K-vector
// of floats in shared memory.
//
// Each block owns a contiguous run of units of R rows (staging.cuh); its warps
// take the units round robin. Lane l reads the 16-byte chunks l, l+32, ... of
// each row, so a warp reads 512 contiguous bytes per chunk step. A unit is read
// from the staging area when the block staged it, else straight from global
// memory with LOADS_IN_FLIGHT independent 16-byte loads issued before the first use.
// The R row sums are reduced with shuffles (every lane gets them) and handed to
// `epi(row0, sums)`, which must ignore rows >= n_rows.
#pragma once
#include "staging.cuh"

// 16-byte loads a lane keeps in flight when it reads weights straight from
// global memory (the output projection, and shares that did not fit the staging
// area): 8 warps x 32 lanes x 8 x 16 B = 32 KB per SM, 4.3 MB over 132 SMs, about
// what Little's law asks for (3 TB/s x ~1.5 us). Staged stages need no registers
// for this: their copies are all issued at once by cp.async.
#ifndef LOADS_IN_FLIGHT
#define LOADS_IN_FLIGHT 8
#endif

// Rows a unit holds for a given K: LOADS_IN_FLIGHT chunks in all, so short rows
// are taken several at a time.
template <int K>
struct RowsPerWarp {
    static constexpr int chunks = K / 256;
    static constexpr int value = chunks >= LOADS_IN_FLIGHT ? 1 : LOADS_IN_FLIGHT / chunks;
};

struct GlobalWeights {
    __device__ __forceinline__ static uint4 load(const bf16_t* p) { return load_weight16(p); }
};
struct StagedWeights {
    __device__ __forceinline__ static uint4 load(const bf16_t* p) { return *reinterpret_cast<const uint4*>(p); }
};

// sums[r] += W[r, 256 c0 : 256 (c0 + N)] . xs[...] for the R rows at W (rows
// from `valid` on do not exist): all R x N loads first, then the math.
template <class Source, int K, int R, int N>
__device__ __forceinline__ void accumulate_chunks(const bf16_t* __restrict__ W, int valid, int c0,
                                                  const float* xs, float (&sums)[R]) {
    const int lane = lane_id();
    uint4 w[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int g = 0; g < N; ++g)
            if (r < valid) w[r][g] = Source::load(W + (size_t)r * K + (c0 + g) * 256 + lane * 8);
#pragma unroll
    for (int g = 0; g < N; ++g) {
        const float* x = xs + (c0 + g) * 256 + lane * 8;
#pragma unroll
        for (int r = 0; r < R; ++r)
            if (r < valid) sums[r] += dot8(w[r][g], x);
    }
}

// The R row sums of one unit whose rows start at W.
template <class Source, int K, int R>
__device__ __forceinline__ void unit_sums(const bf16_t* __restrict__ W, int valid, const float* xs,
                                          float (&sums)[R]) {
    constexpr int CHUNKS = K / 256;                                  // 16-byte chunks per lane per row
    constexpr int GROUP_MAX = LOADS_IN_FLIGHT / R > 1 ? LOADS_IN_FLIGHT / R : 1;   // chunks per row per load group
    constexpr int GROUP = CHUNKS < GROUP_MAX ? CHUNKS : GROUP_MAX;
    constexpr int FULL_GROUPS = CHUNKS / GROUP, TAIL = CHUNKS % GROUP;
#pragma unroll
    for (int r = 0; r < R; ++r) sums[r] = 0.0f;
    // Not unrolled: the compiler would hoist the next group's loads over this
    // group's math and run out of registers.
#pragma unroll 1
    for (int group = 0; group < FULL_GROUPS; ++group)
        accumulate_chunks<Source, K, R, GROUP>(W, valid, group * GROUP, xs, sums);
    if constexpr (TAIL > 0) accumulate_chunks<Source, K, R, TAIL>(W, valid, FULL_GROUPS * GROUP, xs, sums);
#pragma unroll
    for (int r = 0; r < R; ++r) sums[r] = warp_sum(sums[r]);
}

// sums[lane] in lanes < R (after the shuffles every lane holds every row's sum),
// so R rows' epilogues run side by side.
template <int R>
__device__ __forceinline__ float sum_of_lane(const float* sums) {
    float y = sums[0];
#pragma unroll
    for (int r = 1; r < R; ++r)
        if (lane_id() == r) y = sums[r];
    return y;
}

// This block's share `st` of W . xs (st from stage_matrix<K, R> on the same W, n_rows).
template <int K, int R, class Epilogue>
__device__ __forceinline__ void matvec(const Stage& st, const bf16_t* __restrict__ W, int n_rows,
                                       const float* xs, Epilogue epi) {
    static_assert(K % 256 == 0, "K must be a multiple of 256");
    const bf16_t* staged = reinterpret_cast<const bf16_t*>(staging_area() + st.offset);
#pragma unroll 1   // one unit at a time: the loads in flight are the unit's
    for (int j = warp_id(); j < st.units; j += WARPS) {
        const int row0 = (st.unit0 + j) * R;
        const int valid = n_rows - row0;
        float sums[R];
        if (j < st.staged)
            unit_sums<StagedWeights, K, R>(staged + (size_t)j * R * K, valid, xs, sums);
        else
            unit_sums<GlobalWeights, K, R>(W + (size_t)row0 * K, valid, xs, sums);
        epi(row0, sums);
    }
}

// Vectors written by other blocks reach shared memory with every load issued
// before the first store: one L2 round trip per vector instead of one per
// THREADS elements (a serial chain of up to 14 round trips at K = 3584).
template <int K>
struct VectorSlices {
    static_assert(K % 4 == 0, "vectors move as float4");
    static constexpr int N4 = K / 4;                                // float4s in the vector
    static constexpr int PER_THREAD = (N4 + THREADS - 1) / THREADS;
};

// Returns this thread's sum of squares of what it loaded.
template <int K>
__device__ __forceinline__ float load_vector_slices(const float* x, float* xs) {
    using V = VectorSlices<K>;
    float4 v[V::PER_THREAD];
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) v[i] = __ldcg(reinterpret_cast<const float4*>(x) + j);
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) {
            reinterpret_cast<float4*>(xs)[j] = v[i];
            ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
        }
    }
    return ss;
}

// xs = x * rsqrt(mean(x^2) + eps) * scale, where x is already in shared memory
// and `ss` is this thread's part of its sum of squares: the zero-centred RMSNorm
// with scale = 1 + w folded in by the host.
template <int K>
__device__ __forceinline__ void rms_norm_in_place(float ss, const float* scale, float* xs, float* scratch) {
    const float inv = rsqrtf(block_sum(ss, scratch) / K + RMS_EPS);
    for (int i = thread_id(); i < K; i += THREADS) xs[i] = xs[i] * inv * scale[i];
    __syncthreads();
}

// x (float, global, written by other blocks) -> shared memory, RMS-normed.
template <int K>
__device__ __forceinline__ void load_rms_normed(const float* x, const float* scale, float* xs,
                                                float* scratch) {
    rms_norm_in_place<K>(load_vector_slices<K>(x, xs), scale, xs, scratch);
}

template <int K>
__device__ __forceinline__ void load_vector(const float* x, float* xs) {
    load_vector_slices<K>(x, xs);
    __syncthreads();
}
