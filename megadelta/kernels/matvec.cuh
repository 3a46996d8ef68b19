// Batch-1 matrix-vector products spread over every warp of the grid.
//
// W is [n_rows, K] row-major bf16, x is a K-vector of floats in shared memory.
// A warp owns R consecutive rows at a time; lane l reads the 16-byte chunks
// l, l+32, ... of each row, so a warp reads 512 contiguous bytes per chunk
// step, and issues LOADS_IN_FLIGHT (several rows: LOADS_IN_FLIGHT_MULTI_ROW) independent
// 16-byte loads before the first use.
// The R row sums are reduced with shuffles and handed to `epi(row0, sums)`,
// which must ignore rows >= n_rows.
#pragma once
#include "common.cuh"

// 16-byte loads a lane issues before using the first: 16 warps x 32 lanes x 8 x 16 B
// = 64 KB in flight per SM, well above the ~25 KB that Little's law asks for
// (3 TB/s x ~1 us latency / 132 SMs); more costs registers the fused kernel lacks.
#define LOADS_IN_FLIGHT 8
// A warp that owns several rows at a time (short rows, K < 2048) keeps half as
// many (32 KB per SM): with 8 the fused kernel needs ~130 registers on sm_90a and
// spills (ptxas -v). Defined 8 for A/B timing.
#ifndef LOADS_IN_FLIGHT_MULTI_ROW
#define LOADS_IN_FLIGHT_MULTI_ROW 4
#endif

// Rows a warp takes at a time for a given K: LOADS_IN_FLIGHT chunks in all, so short rows
// are taken several at a time.
template <int K>
struct RowsPerWarp {
    static constexpr int chunks = K / 256;
    static constexpr int value = chunks >= LOADS_IN_FLIGHT ? 1 : LOADS_IN_FLIGHT / chunks;
};

// sums[r] += W[row0 + r, 256 c0 : 256 (c0 + N)] . xs[...]: all R x N loads first, then the math.
template <int K, int R, int N>
__device__ __forceinline__ void accumulate_chunks(const bf16_t* __restrict__ W, int row0, int n_rows, int c0,
                                                  const float* xs, float (&sums)[R]) {
    const int lane = lane_id();
    uint4 w[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int g = 0; g < N; ++g)
            if (row0 + r < n_rows) w[r][g] = load_weight16(W + (size_t)(row0 + r) * K + (c0 + g) * 256 + lane * 8);
#pragma unroll
    for (int g = 0; g < N; ++g) {
        const float* x = xs + (c0 + g) * 256 + lane * 8;
#pragma unroll
        for (int r = 0; r < R; ++r)
            if (row0 + r < n_rows) sums[r] += dot8(w[r][g], x);
    }
}

template <int K, int R, class Epilogue>
__device__ __forceinline__ void matvec(const bf16_t* __restrict__ W, int n_rows, const float* xs,
                                       Epilogue epi) {
    static_assert(K % 256 == 0, "K must be a multiple of 256");
    constexpr int CHUNKS = K / 256;                                  // 16-byte chunks per lane per row
    constexpr int IN_FLIGHT = R == 1 ? LOADS_IN_FLIGHT : LOADS_IN_FLIGHT_MULTI_ROW;
    constexpr int GROUP_MAX = IN_FLIGHT / R > 1 ? IN_FLIGHT / R : 1;   // chunks per row per load group
    constexpr int GROUP = CHUNKS < GROUP_MAX ? CHUNKS : GROUP_MAX;
    constexpr int FULL_GROUPS = CHUNKS / GROUP, TAIL = CHUNKS % GROUP;
    const int first_warp = grid_warp();
    const int n_warps = grid_warps();
#pragma unroll 1   // one row group at a time: the loads in flight are the group's
    for (int row0 = first_warp * R; row0 < n_rows; row0 += n_warps * R) {
        float sums[R];
#pragma unroll
        for (int r = 0; r < R; ++r) sums[r] = 0.0f;
        // Not unrolled: the compiler would hoist the next group's loads over this
        // group's math and run out of registers.
#pragma unroll 1
        for (int group = 0; group < FULL_GROUPS; ++group)
            accumulate_chunks<K, R, GROUP>(W, row0, n_rows, group * GROUP, xs, sums);
        if constexpr (TAIL > 0) accumulate_chunks<K, R, TAIL>(W, row0, n_rows, FULL_GROUPS * GROUP, xs, sums);
#pragma unroll
        for (int r = 0; r < R; ++r) sums[r] = warp_sum(sums[r]);
        epi(row0, sums);
    }
}

// Pull the first `max_groups` row groups of each of this block's warps (the rows
// matvec<K, R> will give them) into L2. Issued just before a grid barrier, so
// HBM keeps streaming the next stage's weights while blocks wait.
template <int K, int R>
__device__ __forceinline__ void prefetch_rows(const bf16_t* __restrict__ W, int n_rows, int max_groups) {
    constexpr int LINES_PER_ROW = K * (int)sizeof(bf16_t) / 128;
    const int lane = lane_id();
    const int first_warp = grid_warp();
    const int n_warps = grid_warps();
    int row0 = first_warp * R;
    for (int group = 0; group < max_groups && row0 < n_rows; ++group, row0 += n_warps * R)
        for (int i = lane; i < R * LINES_PER_ROW; i += 32) {
            const int row = row0 + i / LINES_PER_ROW;
            if (row < n_rows) prefetch_l2(W + (size_t)row * K + (i % LINES_PER_ROW) * 64);
        }
}

// x (float, global, written by other blocks) -> shared memory, scaled by
// rsqrt(mean(x^2) + eps) * scale: the zero-centred RMSNorm with scale = 1 + w
// folded in by the host.
template <int K>
__device__ __forceinline__ void load_rms_normed(const float* x, const float* scale, float* xs,
                                                float* scratch) {
    float ss = 0.0f;
    for (int i = thread_id(); i < K; i += THREADS) {
        const float v = load_shared_f32(x + i);
        xs[i] = v;
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, scratch) / K + RMS_EPS);
    for (int i = thread_id(); i < K; i += THREADS) xs[i] = xs[i] * inv * scale[i];
    __syncthreads();
}

template <int K>
__device__ __forceinline__ void load_vector(const float* x, float* xs) {
    for (int i = thread_id(); i < K; i += THREADS) xs[i] = load_shared_f32(x + i);
    __syncthreads();
}
