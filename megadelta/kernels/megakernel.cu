// The decode megakernel: whole decode steps of a Qwen3.5 model in one
// persistent cooperative launch. Every block runs the same sequence of stages;
// a stage spreads its work over all compute warps of the grid and waits for
// exactly the tagged words it reads (common.cuh); the one grid barrier of a
// step is the argmax's (docs/megakernel.md).
// Each block's producer warp streams the weights it will read, in order, into
// a ring in shared memory as far ahead as the ring allows (staging.cuh).
// Greedy runs feed each argmax back as the next input token and publish it to
// host-mapped memory as soon as it is known.
#include "attention.cuh"
#include "deltanet.cuh"
#include "lm_head.cuh"
#include "mlp.cuh"

// The normed input of a layer in s.vec and the input itself in s.residual:
// the first layer of a step takes the token's embedding row, the others x as
// the layer before (tag - 1) wrote it.
__device__ __forceinline__ void load_layer_input(const Params& p, const LayerWeights& L, int layer, unsigned tag,
                                                 int token, Smem& s) {
    if (layer > 0)
        load_rms_normed<HIDDEN>(tagged_words(p, p.x, tag - 1), L.input_norm, s.vec, s.scratch, s.residual);
    else
        load_rms_normed<HIDDEN>(p.embed + (size_t)token * HIDDEN, L.input_norm, s.vec, s.scratch, s.residual);
}

// The producer warp: every weight matrix of the launch, in the order the
// stages take them (WeightStream::take in the functions below), into the ring.
// Each returns false once the compute warps have finished (a stop token).
__device__ __forceinline__ bool give_layer(Producer& out, const Params& p, int layer) {
    const LayerWeights& L = p.layers[layer];
    const bool mixer = LAYER_IS_ATTENTION[layer]
        ? out.give<AttentionInProj>(L.w_in) && out.give<AttentionOutProj>(L.w_out)
        : out.give<DeltaNetInProj>(L.w_in) && out.give<DeltaNetOutProj>(L.w_out);
    return mixer && out.give<GateUp>(L.w_gate_up) && out.give<Down>(L.w_down);
}

__device__ __forceinline__ bool give_steps(Producer& out, const Params& p) {
    for (int step = 0; step < p.n_steps; ++step) {
        for (int layer = 0; layer < N_LAYERS; ++layer)
            if (!give_layer(out, p, layer)) return false;
        using Output = Claims<OutputProjection>;
        if (!out.give<Output::Static>(p.embed, OUTPUT_PAGES_IN_FLIGHT)) return false;
        if constexpr (Output::CHUNKS > 0)
            if (!out.give_claimed<OutputProjection>(p.embed, OUTPUT_PAGES_IN_FLIGHT)) return false;
    }
    return true;
}

__device__ __forceinline__ void produce_weights(const Params& p, Ring& ring) {
    Producer out{ring, p.barrier};
    give_steps(out, p);   // to the end, or until a stop token ends the launch
    out.drain();
}

__device__ __forceinline__ void deltanet_layer(const Params& p, const LayerWeights& L, int layer, unsigned tag,
                                               int token, WeightStream& ws, Smem& s) {
    const int slot = LAYER_SLOT[layer];
    const Stage w_in = ws.take<DeltaNetInProj>();
    const RowInputs<ConvRows::N> conv_in = fetch_row_inputs<DeltaNetInProj>(w_in, conv_rows(p, L, slot), 0);
    stage_state_tile(p, slot, s);
    load_layer_input(p, L, layer, tag, token, s);
    deltanet_project(p, L, slot, tag, w_in, conv_in, s);
    deltanet_recurrence(p, L, slot, tag, s);
    const Stage w_out = ws.take<DeltaNetOutProj>();
    deltanet_gated_norm(p, L, tag, s);
    project_and_add_residual<DeltaNetOutProj>(p.x_mid, tag, w_out, s);
}

__device__ __forceinline__ void attention_layer(const Params& p, const LayerWeights& L, int layer, unsigned tag,
                                                int token, int pos, WeightStream& ws, Smem& s) {
    const int slot = LAYER_SLOT[layer];
    const Stage w_in = ws.take<AttentionInProj>();
    load_layer_input(p, L, layer, tag, token, s);
    attention_project(p, tag, w_in, s);
    attention_partials(p, L, slot, pos, tag, s);
    attention_combine(p, pos, tag);
    const Stage w_out = ws.take<AttentionOutProj>();
    load_vector<Q_SIZE>(tagged_words(p, p.mixer_out, tag), s.vec);
    stage_point(POINT_AWAITED);
    project_and_add_residual<AttentionOutProj>(p.x_mid, tag, w_out, s);
}

// After the mixer: h from the block's gate/up rows, then x from its rows of W_down.
__device__ __forceinline__ void mlp_block(const Params& p, const LayerWeights& L, unsigned tag, WeightStream& ws,
                                          Smem& s) {
    const Stage w_gate_up = ws.take<GateUp>();
    const Stage w_down = ws.take<Down>();
    load_rms_normed<HIDDEN>(tagged_words(p, p.x_mid, tag), L.post_norm, s.vec, s.scratch, s.residual);
    mlp_up(p, tag, w_gate_up, s);
    mlp_down(p, tag, w_down, s);
}

__device__ __forceinline__ bool is_stop_token(const Params& p, int token) {
    for (int i = 0; i < p.n_stop; ++i)
        if (p.stop_ids[i] == token) return true;
    return false;
}

__device__ __forceinline__ void decode_steps(const Params& p, Smem& s) {
    WeightStream ws;
    int token = p.first_token;
    for (int step = 0; step < p.n_steps; ++step) {
        const int pos = p.position + step;
        const unsigned step_tag = p.epoch + (unsigned)step * N_LAYERS;
        for (int layer = 0; layer < N_LAYERS; ++layer) {
            const LayerWeights& L = p.layers[layer];
            const unsigned tag = step_tag + layer;
            stage_begin(p.barrier, step * (N_LAYERS + 1) + layer);
            unit_clock_layer(p.barrier, step, layer, ws.next);
            if (LAYER_IS_ATTENTION[layer])
                attention_layer(p, L, layer, tag, token, pos, ws, s);
            else
                deltanet_layer(p, L, layer, tag, token, ws, s);
            mlp_block(p, L, tag, ws, s);
        }
        stage_begin(p.barrier, step * (N_LAYERS + 1) + N_LAYERS);
        unit_clock_stop(p.barrier, step);
        const Stage lm_head = ws.take<Claims<OutputProjection>::Static>();
        load_rms_normed<HIDDEN>(tagged_words(p, p.x, step_tag + N_LAYERS - 1), p.final_norm, s.vec,
                                s.scratch, nullptr);
        token = lm_head_argmax(p, lm_head, ws, s);
        if (p.tokens_out != nullptr && blockIdx.x == 0 && thread_id() == 0) {
            p.tokens_out[step] = token;
            __threadfence_system();   // the token is visible before the count that announces it
            *p.progress = step + 1;
            __threadfence_system();
        }
        if (is_stop_token(p, token)) break;
    }
    stage_begin(p.barrier, p.n_steps * (N_LAYERS + 1));   // the end of the last stage
}

extern "C" __global__ void __launch_bounds__(BLOCK_THREADS, 1) megadelta_decode(const Params p) {
    Smem& s = block_smem();
    init_ring(s.ring, ring_bytes(p));
    if (warp_id() >= WARPS) {   // the producer warpgroup: its first warp's lane 0 on Hopper, every lane before
        producer_registers();
        if (warp_id() == WARPS && (BULK_COPY == 0 || lane_id() == 0)) produce_weights(p, s.ring);
        return;
    }
    compute_registers();
    stage_clock_init();
    decode_steps(p, s);
    if (thread_id() == 0) s.ring.stop = 1;   // a stop token may leave units the producer waits to give
}
