// SwiGLU MLP: two stages separated by a grid barrier.
//   up:   h = silu(gate . n) * (up . n), n = rmsnorm(x); gate and up rows are
//         interleaved so one warp produces both halves of h[i]
//   down: x += W_down . h
#pragma once
#include "matvec.cuh"
#include "params.cuh"
#include "smem.cuh"

// Rows per warp of the gate/up product: whole (gate, up) pairs.
constexpr int UP_ROWS = RowsPerWarp<HIDDEN>::value < 2 ? 2 : RowsPerWarp<HIDDEN>::value;
static_assert(UP_ROWS % 2 == 0, "a warp must own whole (gate, up) row pairs");

// s.vec holds rmsnorm(x).
__device__ __forceinline__ void mlp_up(const Params& p, const LayerWeights& L, const Stage& st, Smem& s) {
    constexpr int R = UP_ROWS;
    wait_staged(s.pipe, st);
    const bool lane0 = lane_id() == 0;
    matvec<HIDDEN, R>(st, L.w_gate_up, 2 * INTERMEDIATE, s.vec, [=](int row0, const float* sums, const auto&) {
        if (!lane0) return;
#pragma unroll
        for (int r = 0; r < R; r += 2)
            if (row0 + r < 2 * INTERMEDIATE) p.mlp_h[(row0 + r) / 2] = silu(sums[r]) * sums[r + 1];
    });
}

// s.vec holds h; `residual` is fetch_residual<INTERMEDIATE>(p, st).
__device__ __forceinline__ void mlp_down(const Params& p, const LayerWeights& L, const Stage& st,
                                         RowInputs<1> residual, Smem& s) {
    wait_staged(s.pipe, st);
    project_and_add_residual<INTERMEDIATE>(p, st, L.w_down, residual, s);
}
