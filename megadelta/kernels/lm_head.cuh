// Final norm, tied output projection (the embedding matrix) and greedy argmax:
// warp -> block maximum in shared memory, block -> grid through one slot per
// block and a grid barrier, after which every block reduces the slots itself
// and so knows the next token without another barrier. As torch.argmax: ties
// go to the lower token id and NaN counts as the largest value, so the token
// is always a row of the vocabulary (a broken checkpoint whose logits are all
// NaN yields token 0, not an index past the embedding).
#pragma once
#include "matvec.cuh"
#include "params.cuh"
#include "smem.cuh"

__device__ __forceinline__ bool better(float v, int i, float best_v, int best_i) {
    const bool v_nan = v != v, best_nan = best_v != best_v;
    if (v_nan || best_nan) return v_nan && (!best_nan || i < best_i);
    return v > best_v || (v == best_v && i < best_i);
}

// s.vec holds the final-normed x; `st` is the block's static share of the
// rows, then come the chunks it claims (staging.cuh: Claims), whose pages `ws` counts.
__device__ __forceinline__ int lm_head_argmax(const Params& p, const Stage& st, WeightStream& ws, Smem& s) {
    using Output = Claims<OutputProjection>;
    constexpr int R = OutputProjection::R;
    const int lane = lane_id(), warp = warp_id();
    float best_v = NEG_INF;
    int best_i = VOCAB;
    const auto keep_best = [&](int row0, const float* sums, const auto&) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int row = row0 + r;
            if (row >= VOCAB) break;
            if (p.logits != nullptr && lane == 0) p.logits[row] = sums[r];
            if (better(sums[r], row, best_v, best_i)) {
                best_v = sums[r];
                best_i = row;
            }
        }
    };
    matvec<Output::Static>(st, s.ring, s.vec, keep_best);
    if constexpr (Output::CHUNKS > 0) ws.next += matvec_claimed<OutputProjection>(s.ring, ws.next, s.vec, keep_best);
    if (lane == 0) {
        s.best_val[warp] = best_v;
        s.best_idx[warp] = best_i;
    }
    block_sync();
    if (thread_id() == 0) {
        for (int w = 1; w < WARPS; ++w)
            if (better(s.best_val[w], s.best_idx[w], best_v, best_i)) {
                best_v = s.best_val[w];
                best_i = s.best_idx[w];
            }
        p.argmax_val[blockIdx.x] = best_v;
        p.argmax_idx[blockIdx.x] = best_i;
    }
    grid_barrier(p.barrier);
    if (warp == 0) {
        best_v = NEG_INF;
        best_i = VOCAB;
        for (int b = lane; b < gridDim.x; b += 32) {
            const float v = load_shared_f32(p.argmax_val + b);
            const int i = __ldcg(p.argmax_idx + b);
            if (better(v, i, best_v, best_i)) {
                best_v = v;
                best_i = i;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, best_v, o);
            const int i = __shfl_xor_sync(0xffffffffu, best_i, o);
            if (better(v, i, best_v, best_i)) {
                best_v = v;
                best_i = i;
            }
        }
        if (lane == 0) s.best_idx[0] = best_i;
    }
    block_sync();
    const int token = s.best_idx[0];
    block_sync();   // best_idx is rewritten by the next step
    return token;
}
