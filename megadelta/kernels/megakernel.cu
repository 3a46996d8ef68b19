// The decode megakernel: whole decode steps of a Qwen3.5 model in one
// persistent cooperative launch. Every block runs the same sequence of stages;
// a stage spreads its work over all warps of the grid, and a grid barrier
// separates stages whose inputs another block produces (see docs/megakernel.md
// for the list). Greedy runs feed each argmax back as the next input token and
// publish it to host-mapped memory as soon as it is known.
#include "attention.cuh"
#include "deltanet.cuh"
#include "lm_head.cuh"
#include "mlp.cuh"

// The normed input of a layer in s.vec. Layer 0 takes the token's embedding
// row; block 0 also stores it as the residual stream.
__device__ __forceinline__ void load_layer_input(const Params& p, const LayerWeights& L, int layer,
                                                 int token, Smem& s) {
    float ss = 0.0f;
    for (int i = thread_id(); i < HIDDEN; i += THREADS) {
        float v;
        if (layer == 0) {
            v = bf16_to_float(p.embed[(size_t)token * HIDDEN + i]);
            if (blockIdx.x == 0) p.x[i] = v;
        } else {
            v = load_shared_f32(p.x + i);
        }
        s.vec[i] = v;
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, s.scratch) / HIDDEN + RMS_EPS);
    for (int i = thread_id(); i < HIDDEN; i += THREADS) s.vec[i] *= inv * L.input_norm[i];
    __syncthreads();
}

// PREFETCH_NEXT_STAGE (default on): before each grid barrier a block asks L2 for
// the weights (or state) it will read in the next stage. Defined 0 for A/B timing.
#ifndef PREFETCH_NEXT_STAGE
#define PREFETCH_NEXT_STAGE 1
#endif
#define ALL_GROUPS (1 << 30)
// Row groups per warp of the output projection pulled ahead of the lm_head stage:
// the first ~17 MB of its 0.5 GB, what fits in L2 beside the rest.
#define LM_HEAD_PREFETCH_GROUPS 2

template <int K, int R>
__device__ __forceinline__ void prefetch_then_barrier(const Params& p, const bf16_t* W, int n_rows,
                                                      int max_groups = ALL_GROUPS) {
    if (PREFETCH_NEXT_STAGE) prefetch_rows<K, R>(W, n_rows, max_groups);
    grid_barrier(p.barrier);
}

__device__ __forceinline__ void deltanet_layer(const Params& p, const LayerWeights& L, int slot, Smem& s) {
    deltanet_project(p, L, slot, s);
    if (PREFETCH_NEXT_STAGE) prefetch_deltanet_state(p, slot);
    grid_barrier(p.barrier);
    deltanet_recurrence(p, L, slot, s);
    prefetch_then_barrier<VALUE_DIM, RowsPerWarp<VALUE_DIM>::value>(p, L.w_out, HIDDEN);
    deltanet_output(p, L, s);
}

__device__ __forceinline__ void attention_layer(const Params& p, const LayerWeights& L, int slot, int pos,
                                                Smem& s) {
    attention_project(p, L, s);
    grid_barrier(p.barrier);
    attention_partials(p, L, slot, pos, s);
    prefetch_then_barrier<Q_SIZE, RowsPerWarp<Q_SIZE>::value>(p, L.w_out, HIDDEN);
    attention_combine(p, pos);
    grid_barrier(p.barrier);
    load_vector<Q_SIZE>(p.mixer_out, s.vec);
    project_and_add_residual<Q_SIZE>(p, L.w_out, s);
}

// After the mixer's residual add: then the MLP, each stage ending with the next
// stage's weights requested.
__device__ __forceinline__ void mlp_block(const Params& p, const LayerWeights& L, int layer, Smem& s) {
    prefetch_then_barrier<HIDDEN, UP_ROWS>(p, L.w_gate_up, 2 * INTERMEDIATE);
    mlp_up(p, L, s);
    prefetch_then_barrier<INTERMEDIATE, RowsPerWarp<INTERMEDIATE>::value>(p, L.w_down, HIDDEN);
    mlp_down(p, L, s);
    constexpr int R_IN = RowsPerWarp<HIDDEN>::value;
    if (layer + 1 == N_LAYERS)
        prefetch_then_barrier<HIDDEN, R_IN>(p, p.embed, VOCAB, LM_HEAD_PREFETCH_GROUPS);
    else
        prefetch_then_barrier<HIDDEN, R_IN>(p, p.layers[layer + 1].w_in,
                                            LAYER_IS_ATTENTION[layer + 1] ? ATTN_PROJ_ROWS : DN_PROJ_ROWS);
}

__device__ __forceinline__ bool is_stop_token(const Params& p, int token) {
    for (int i = 0; i < p.n_stop; ++i)
        if (p.stop_ids[i] == token) return true;
    return false;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) megadelta_decode(const Params p) {
    BLOCK_SHARED(Smem, s);
    int token = p.first_token;
    for (int step = 0; step < p.n_steps; ++step) {
        const int pos = p.position + step;
        for (int layer = 0; layer < N_LAYERS; ++layer) {
            const LayerWeights& L = p.layers[layer];
            load_layer_input(p, L, layer, token, s);
            if (LAYER_IS_ATTENTION[layer])
                attention_layer(p, L, LAYER_SLOT[layer], pos, s);
            else
                deltanet_layer(p, L, LAYER_SLOT[layer], s);
            mlp_block(p, L, layer, s);
        }
        token = lm_head_argmax(p, s);
        if (p.tokens_out != nullptr && blockIdx.x == 0 && thread_id() == 0) {
            p.tokens_out[step] = token;
            __threadfence_system();   // the token is visible before the count that announces it
            *p.progress = step + 1;
            __threadfence_system();
        }
        if (is_stop_token(p, token)) break;
    }
}
