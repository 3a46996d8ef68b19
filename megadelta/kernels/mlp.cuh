// SwiGLU MLP in one stage (one grid barrier): each block owns a slice of
// h = silu(gate . n) * (up . n), n = rmsnorm(x), and the matching rows of
// W_down^T, so it multiplies its own slice into a partial x' = W_down[:, slice] . h
// (split-K) and adds it into the next residual buffer with vector atomics; h
// never leaves the block. The next buffer was cleared by the layer's first
// stage, and block 0 also adds the residual itself (its copy in s.residual).
//   up:   gate and up rows interleaved, so one warp produces both halves of h[i]
//   down: thread t owns output columns 4t + [0, 4) (and every 4 * THREADS after)
#pragma once
#include "matvec.cuh"
#include "params.cuh"
#include "smem.cuh"

// Rows per warp of the gate/up product: whole (gate, up) row pairs; a unit of
// W_down^T holds the rows of the same h entries.
constexpr int UP_ROWS = RowsPerWarp<HIDDEN>::value < 2 ? 2 : RowsPerWarp<HIDDEN>::value;
constexpr int DOWN_ROWS = UP_ROWS / 2;
static_assert(UP_ROWS % 2 == 0, "a warp must own whole (gate, up) row pairs");
static_assert(HIDDEN % 4 == 0, "the down product adds float4s");

// The residual stream that layer `layer` reads (and its mixer adds to); its
// MLP accumulates into residual_stream(p, layer + 1).
__device__ __forceinline__ float* residual_stream(const Params& p, int layer) {
    return p.x + (layer & 1) * HIDDEN;
}

// In the layer's first stage: clear the buffer its MLP will accumulate into.
// Its last reader was the previous layer's MLP stage, a grid barrier ago.
__device__ __forceinline__ void clear_next_residual(const Params& p, int layer) {
    if (blockIdx.x != gridDim.x - 1) return;
    float4* next = reinterpret_cast<float4*>(residual_stream(p, layer + 1));
    for (int i = thread_id(); i < HIDDEN / 4; i += THREADS) next[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// s.vec holds rmsnorm(x); the block's slice of h goes to s.mlp_h.
__device__ __forceinline__ void mlp_up(const LayerWeights& L, const Stage& st, Smem& s) {
    constexpr int R = UP_ROWS;
    wait_staged(s.pipe, st);
    const bool lane0 = lane_id() == 0;
    const int h0 = st.unit0 * DOWN_ROWS;
    float* h = s.mlp_h;
    matvec<HIDDEN, R>(st, L.w_gate_up, 2 * INTERMEDIATE, s.vec, [=](int row0, const float* sums, const auto&) {
        if (!lane0) return;
#pragma unroll
        for (int r = 0; r < R; r += 2)
            if (row0 + r < 2 * INTERMEDIATE) h[(row0 + r) / 2 - h0] = silu(sums[r]) * sums[r + 1];
    });
}

// 4 bf16 weights of a W_down^T row, from the staging area or global memory.
__device__ __forceinline__ uint2 down_weights4(const bf16_t* staged_row, const bf16_t* global_row, int col) {
    if (staged_row != nullptr) return *reinterpret_cast<const uint2*>(staged_row + col);
    return __ldg(reinterpret_cast<const uint2*>(global_row + col));
}

// `st`: the block's share of W_down^T (stage_matrix<HIDDEN, DOWN_ROWS>), the
// same h entries as mlp_up's share.
__device__ __forceinline__ void mlp_down(const Params& p, const LayerWeights& L, int layer, const Stage& st,
                                         Smem& s) {
    wait_staged(s.pipe, st);   // also: every warp's h is in s.mlp_h
    const int h0 = st.unit0 * DOWN_ROWS;
    const int n_h = max(0, min(st.units * DOWN_ROWS, INTERMEDIATE - h0));
    const int n_staged = min(st.staged * DOWN_ROWS, n_h);
    const bf16_t* staged = reinterpret_cast<const bf16_t*>(staging_area() + st.offset);
    float* next = residual_stream(p, layer + 1);
    for (int col = 4 * thread_id(); col < HIDDEN; col += 4 * THREADS) {
        float4 acc = blockIdx.x == 0 ? *reinterpret_cast<const float4*>(s.residual + col)
                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
        for (int i = 0; i < n_h; ++i) {
            const uint2 w = down_weights4(i < n_staged ? staged + (size_t)i * HIDDEN : nullptr,
                                          L.w_down_t + (size_t)(h0 + i) * HIDDEN, col);
            const float hi = s.mlp_h[i];
            acc.x = fmaf(hi, bf16_lo(w.x), acc.x);
            acc.y = fmaf(hi, bf16_hi(w.x), acc.y);
            acc.z = fmaf(hi, bf16_lo(w.y), acc.z);
            acc.w = fmaf(hi, bf16_hi(w.y), acc.w);
        }
        red_add4(next + col, acc);
    }
}
