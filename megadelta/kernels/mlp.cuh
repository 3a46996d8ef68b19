// SwiGLU MLP in one stage, ending at the layer's one grid barrier: each block
// owns a slice of h = silu(gate . n) * (up . n), n = rmsnorm(x_mid), and the
// matching rows of W_down^T, so it multiplies its own slice into a partial
// x' = W_down[:, slice] . h (split-K) and adds it into the next residual buffer
// with vector atomics; h never leaves the block. Block 0 also adds x_mid itself
// (its copy in s.residual). Sums of atomic adds carry no tag, so the layer's
// end is a grid barrier (with its release fence) and the next buffer was cleared
// a barrier before the first add (clear_residual_ahead).
//   up:   gate and up rows interleaved, so one warp produces both halves of h[i]
//   down: thread t owns output columns 4t + [0, 4) (and every 4 * THREADS after)
#pragma once
#include "matvec.cuh"
#include "params.cuh"
#include "smem.cuh"

// (GateUp and DownT, the matrices' shapes, are in staging.cuh.)
constexpr int DOWN_ROWS = DownT::R;
static_assert(HIDDEN % 4 == 0, "the down product adds float4s");
constexpr int DOWN_PASSES = (HIDDEN + 4 * THREADS - 1) / (4 * THREADS);   // float4 columns a thread owns

// The residual stream that the layer tagged `tag` reads; its MLP accumulates
// into residual_stream(p, tag + 1). Three buffers, so that each is cleared a
// grid barrier after its last read and a grid barrier before its first add.
__device__ __forceinline__ float* residual_stream(const Params& p, unsigned tag) {
    return p.x + (tag % 3) * HIDDEN;
}

// Clear the buffer of layer `tag` + 2's input (read last by layer tag - 1, before
// the last grid barrier; added to first by layer tag + 1, after the next one).
__device__ __forceinline__ void clear_residual_ahead(const Params& p, unsigned tag) {
    if (blockIdx.x != gridDim.x - 1) return;
    float4* ahead = reinterpret_cast<float4*>(residual_stream(p, tag + 2));
    for (int i = thread_id(); i < HIDDEN / 4; i += THREADS) ahead[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// s.vec holds rmsnorm(x); the block's slice of h goes to s.mlp_h.
__device__ __forceinline__ void mlp_up(const LayerWeights& L, const Stage& st, Smem& s) {
    constexpr int R = GateUp::R;
    const bool lane0 = lane_id() == 0;
    const int h0 = st.unit0 * DOWN_ROWS;
    float* h = s.mlp_h;
    matvec<GateUp>(st, s.ring, s.vec, [=](int row0, const float* sums, const auto&) {
        if (!lane0) return;
#pragma unroll
        for (int r = 0; r < R; r += 2)
            if (row0 + r < 2 * INTERMEDIATE) h[(row0 + r) / 2 - h0] = silu(sums[r]) * sums[r + 1];
    });
}

// `st`: the block's share of W_down^T (DOWN_ROWS rows a unit), the same h
// entries as mlp_up's share. Every thread reads every row (its own columns), a
// page at a time: each warp releases each page once, for all its units.
__device__ __forceinline__ void mlp_down(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    constexpr int UPP = DownT::UNITS_PER_PAGE;
    block_sync();   // every warp's h is in s.mlp_h
    float4 acc[DOWN_PASSES];
#pragma unroll
    for (int c = 0; c < DOWN_PASSES; ++c) {
        const int col = 4 * (thread_id() + c * THREADS);
        acc[c] = blockIdx.x == 0 && col < HIDDEN ? *reinterpret_cast<const float4*>(s.residual + col)
                                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    const int h0 = st.unit0 * DOWN_ROWS;
    PageCursor<DownT> pages(st, s.ring);
#pragma unroll 1
    for (int j = 0; j < st.units; j += UPP) {
        const bf16_t* rows;
        const unsigned slot = pages.acquire(s.ring, j, rows);
        const int n_units = min(UPP, st.units - j);
        const int n_rows = min(n_units * DOWN_ROWS, INTERMEDIATE - h0 - j * DOWN_ROWS);
#pragma unroll
        for (int r = 0; r < UPP * DOWN_ROWS; ++r) {
            if (r >= n_rows) break;
            const float hi = s.mlp_h[j * DOWN_ROWS + r];
#pragma unroll
            for (int c = 0; c < DOWN_PASSES; ++c) {
                const int col = 4 * (thread_id() + c * THREADS);
                if (col >= HIDDEN) break;
                const uint2 w = *reinterpret_cast<const uint2*>(rows + (size_t)r * HIDDEN + col);
                acc[c].x = fmaf(hi, bf16_lo(w.x), acc[c].x);
                acc[c].y = fmaf(hi, bf16_hi(w.x), acc[c].y);
                acc[c].z = fmaf(hi, bf16_lo(w.y), acc[c].z);
                acc[c].w = fmaf(hi, bf16_hi(w.y), acc[c].w);
            }
        }
        release_slot(s.ring, slot, n_units);
    }
    stage_point(POINT_PRODUCT);
    float* next = residual_stream(p, tag + 1);
#pragma unroll
    for (int c = 0; c < DOWN_PASSES; ++c) {
        const int col = 4 * (thread_id() + c * THREADS);
        if (col < HIDDEN) red_add4(next + col, acc[c]);
    }
}
