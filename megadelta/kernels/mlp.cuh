// SwiGLU MLP in two stages, handing over through tagged words like the mixer's:
//   up:   h = silu(gate . n) * (up . n), n = rmsnorm(x_mid): each block its rows
//         (gate and up rows interleaved, so one warp produces both halves of
//         h[i]), published as tagged words;
//   down: x = x_mid + W_down . h: each block waits for all of h and multiplies
//         its rows of W_down, adding x_mid's rows from its own copy (s.residual);
//         the next layer (or the final norm) waits for all of x.
// No grid barrier ends a layer: every block reads all of h before any block
// can write the next layer's x, and all of x before any block can write the
// next h, so each tagged buffer is rewritten only after every reader is done
// with it (docs/megakernel.md).
#pragma once
#include "matvec.cuh"

// (GateUp and Down, the matrices' shapes, are in staging.cuh.)

// s.vec holds rmsnorm(x_mid); the block's entries of h go to p.h.
__device__ __forceinline__ void mlp_up(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    constexpr int R = GateUp::R;
    u64* h = p.h;
    matvec<GateUp>(st, s.ring, s.vec, [=](int row0, const float* sums, const auto&) {
        if (lane_id() != 0) return;
#pragma unroll
        for (int r = 0; r < R; r += 2)
            if (row0 + r < 2 * INTERMEDIATE) publish(h + (row0 + r) / 2, silu(sums[r]) * sums[r + 1], tag);
    });
}

// x = x_mid + W_down . h for the block's rows of W_down.
__device__ __forceinline__ void mlp_down(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    load_vector<INTERMEDIATE>(tagged_words(p, p.h, tag), s.vec);
    stage_point(POINT_AWAITED);
    project_and_add_residual<Down>(p.x, tag, st, s);
}
