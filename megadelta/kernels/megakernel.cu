// The decode megakernel: whole decode steps of a Qwen3.5 model in one
// persistent cooperative launch. Every block runs the same sequence of stages;
// a stage spreads its work over all warps of the grid, and a grid barrier
// separates stages whose inputs another block produces (see docs/megakernel.md
// for the list). Each block stages the weights of the next stage into shared
// memory while it works on the current one (staging.cuh). Greedy runs feed each
// argmax back as the next input token and publish it to host-mapped memory as
// soon as it is known.
#include "attention.cuh"
#include "deltanet.cuh"
#include "lm_head.cuh"
#include "mlp.cuh"

// The normed input of a layer in s.vec and the input itself in s.residual:
// layer 0 takes the token's embedding row. Also clears the buffer the layer's
// MLP accumulates into.
__device__ __forceinline__ void load_layer_input(const Params& p, const LayerWeights& L, int layer,
                                                 int token, Smem& s) {
    clear_next_residual(p, layer);
    if (layer > 0)
        load_rms_normed<HIDDEN>(residual_stream(p, layer), L.input_norm, s.vec, s.scratch, s.residual);
    else
        load_rms_normed<HIDDEN>(p.embed + (size_t)token * HIDDEN, L.input_norm, s.vec, s.scratch, s.residual);
}

// The staged matrices, in the order the stages read them. Each weight stage
// first loads its input vector (and the per-row inputs of its epilogue), then
// issues the copies of the next weight stage (staging.cuh), then computes: the
// stage's own round trips go out before the next burst of copies, and one
// stage's weights are always streaming in while another's are read.
constexpr int R_IN = RowsPerWarp<HIDDEN>::value;
// The part of the output projection staged ahead (it streams 0.5 GB from
// global memory anyway): small enough that the next step's first layer still fits.
#define LM_HEAD_STAGED_FRACTION 4

__device__ __forceinline__ void stage_layer_input(const Params& p, Smem& s, int layer) {
    stage_matrix<HIDDEN, R_IN>(s.pipe, staging_bytes(p), p.layers[layer].w_in,
                               LAYER_IS_ATTENTION[layer] ? ATTN_PROJ_ROWS : DN_PROJ_ROWS);
}

__device__ __forceinline__ void stage_gate_up(const Params& p, const LayerWeights& L, Smem& s) {
    stage_matrix<HIDDEN, UP_ROWS>(s.pipe, staging_bytes(p), L.w_gate_up, 2 * INTERMEDIATE);
}

__device__ __forceinline__ void deltanet_layer(const Params& p, const LayerWeights& L, int layer, int token,
                                               Smem& s) {
    const int slot = LAYER_SLOT[layer];
    const Stage w_in = s.pipe.pending;
    const RowInputs<ConvRows::N> conv_in = fetch_row_inputs<R_IN>(w_in, conv_rows(p, L, slot), DN_PROJ_ROWS, 0);
    load_layer_input(p, L, layer, token, s);
    stage_state_tile(p, slot, s);
    stage_matrix<VALUE_DIM, RowsPerWarp<VALUE_DIM>::value>(s.pipe, staging_bytes(p), L.w_out, HIDDEN);
    wait_staged(s.pipe, w_in);
    deltanet_project(p, L, slot, w_in, conv_in, s);
    grid_barrier(p.barrier);
    deltanet_recurrence(p, L, slot, s);
    grid_barrier(p.barrier);
    const Stage w_out = s.pipe.pending;
    deltanet_gated_norm(p, L, s);
    stage_gate_up(p, L, s);
    wait_staged(s.pipe, w_out);
    project_and_add_residual<VALUE_DIM>(residual_stream(p, layer), w_out, L.w_out, s);
}

__device__ __forceinline__ void attention_layer(const Params& p, const LayerWeights& L, int layer, int token,
                                                int pos, Smem& s) {
    const int slot = LAYER_SLOT[layer];
    const Stage w_in = s.pipe.pending;
    load_layer_input(p, L, layer, token, s);
    stage_matrix<Q_SIZE, RowsPerWarp<Q_SIZE>::value>(s.pipe, staging_bytes(p), L.w_out, HIDDEN);
    wait_staged(s.pipe, w_in);
    attention_project(p, L, w_in, s);
    grid_barrier(p.barrier);
    attention_partials(p, L, slot, pos, s);
    grid_barrier(p.barrier);
    attention_combine(p, pos);
    grid_barrier(p.barrier);
    const Stage w_out = s.pipe.pending;
    load_vector<Q_SIZE>(p.mixer_out, s.vec);
    stage_gate_up(p, L, s);
    wait_staged(s.pipe, w_out);
    project_and_add_residual<Q_SIZE>(residual_stream(p, layer), w_out, L.w_out, s);
}

// After the mixer's residual add, one stage: W_down^T's share is copied while
// the gate/up product runs on the staged gate/up share; once that share is read,
// its end of the staging area takes the next layer's (or the output
// projection's) weights, which stream in during the down product and the barrier.
__device__ __forceinline__ void mlp_block(const Params& p, const LayerWeights& L, int layer, Smem& s) {
    grid_barrier(p.barrier);
    const Stage w_gate_up = s.pipe.pending;
    load_rms_normed<HIDDEN>(residual_stream(p, layer), L.post_norm, s.vec, s.scratch, s.residual);
    stage_matrix<HIDDEN, DOWN_ROWS>(s.pipe, staging_bytes(p), L.w_down_t, INTERMEDIATE);
    const Stage w_down_t = s.pipe.pending;
    mlp_up(L, w_gate_up, s);
    __syncthreads();   // every warp has read the gate/up share before copies overwrite it
    if (layer + 1 == N_LAYERS)
        stage_matrix<HIDDEN, R_IN>(s.pipe, staging_bytes(p), p.embed, VOCAB, staging_bytes(p) / LM_HEAD_STAGED_FRACTION);
    else
        stage_layer_input(p, s, layer + 1);
    mlp_down(p, L, layer, w_down_t, s);
    grid_barrier(p.barrier);
}

__device__ __forceinline__ bool is_stop_token(const Params& p, int token) {
    for (int i = 0; i < p.n_stop; ++i)
        if (p.stop_ids[i] == token) return true;
    return false;
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) megadelta_decode(const Params p) {
    Smem& s = block_smem();
    stage_clock_init(p.barrier);
    init_pipeline(s.pipe);
    stage_layer_input(p, s, 0);
    int token = p.first_token;
    for (int step = 0; step < p.n_steps; ++step) {
        const int pos = p.position + step;
        for (int layer = 0; layer < N_LAYERS; ++layer) {
            const LayerWeights& L = p.layers[layer];
            if (LAYER_IS_ATTENTION[layer])
                attention_layer(p, L, layer, token, pos, s);
            else
                deltanet_layer(p, L, layer, token, s);
            mlp_block(p, L, layer, s);
        }
        const Stage lm_head = s.pipe.pending;
        load_rms_normed<HIDDEN>(residual_stream(p, N_LAYERS), p.final_norm, s.vec, s.scratch, nullptr);
        stage_layer_input(p, s, 0);   // the next step's (unused after the last step)
        token = lm_head_argmax(p, lm_head, s);
        if (p.tokens_out != nullptr && blockIdx.x == 0 && thread_id() == 0) {
            p.tokens_out[step] = token;
            __threadfence_system();   // the token is visible before the count that announces it
            *p.progress = step + 1;
            __threadfence_system();
        }
        if (is_stop_token(p, token)) break;
    }
    drain_staging(s.pipe);
}
