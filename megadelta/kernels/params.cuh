// The kernel's one argument: pointers to weights, state and scratch, and the
// step range. Mirrored field for field by megadelta/kernels/launch.py.
#pragma once
#include "common.cuh"

struct LayerWeights {
    const float* input_norm;      // [HIDDEN], 1 + w (zero-centred norm folded)
    const float* post_norm;       // [HIDDEN], 1 + w
    const bf16_t* w_in;           // DeltaNet [DN_PROJ_ROWS, HIDDEN]: qkv | z | b | a
                                  // attention [ATTN_PROJ_ROWS, HIDDEN]: (query, gate) per head | k | v
    const bf16_t* w_out;          // DeltaNet [HIDDEN, VALUE_DIM]; attention [HIDDEN, Q_SIZE]
    const float* conv_w;          // DeltaNet [CONV_DIM, CONV_KERNEL]
    const float* a_log;           // DeltaNet [DN_VALUE_HEADS]
    const float* dt_bias;         // DeltaNet [DN_VALUE_HEADS]
    const float* out_norm;        // DeltaNet gated norm [DN_VALUE_DIM], w (not zero-centred)
    const float* q_norm;          // attention [HEAD_DIM], 1 + w
    const float* k_norm;          // attention [HEAD_DIM], 1 + w
    const bf16_t* w_gate_up;      // [2 * INTERMEDIATE, HIDDEN]: gate row i, up row i, gate row i+1, ...
    const bf16_t* w_down;         // [HIDDEN, INTERMEDIATE]
};

struct Params {
    const LayerWeights* layers;   // [N_LAYERS]
    const bf16_t* embed;          // [VOCAB, HIDDEN], also the tied output projection
    const float* final_norm;      // [HIDDEN], 1 + w
    // SequenceState tensors, read and written in place
    float* conv_state;            // [n_deltanet, CONV_DIM, CONV_KERNEL - 1]
    float* dn_state;              // [n_deltanet, DN_VALUE_HEADS, DN_KEY_DIM, DN_VALUE_DIM]
    bf16_t* k_cache;              // [n_attention, N_KV_HEADS, max_seq, HEAD_DIM]
    bf16_t* v_cache;
    // scratch: float32, or tagged words (common.cuh: a float and the tag of the layer that wrote it)
    u64* x;                       // [HIDDEN] tagged: the residual stream between layers
    u64* x_mid;                   // [HIDDEN] tagged: x after the mixer, the MLP's input
    u64* h;                       // [INTERMEDIATE] tagged: the MLP's silu(gate) * up
    u64* proj;                    // [PROJ_ROWS_MAX] tagged: input projections (after conv + SiLU for q|k|v)
    u64* mixer_out;               // [max(VALUE_DIM, Q_SIZE)] tagged: delta-rule output / gated attention output
    u64* attn_partial;            // [gridDim.x, QUERIES_PER_KV, HEAD_DIM + 2] tagged: flash-decoding partials
    float* argmax_val;            // [gridDim.x]
    int* argmax_idx;              // [gridDim.x]
    float* logits;                // [VOCAB] or null (greedy runs skip writing logits)
    u64* barrier;                 // [2]: grid barrier arrivals (zero at allocation), report address
    volatile int* tokens_out;     // [n_steps] host-mapped: greedy tokens as produced, or null
    volatile int* progress;       // [1] host-mapped: tokens published so far; negative after
                                  // a grid-barrier timeout (-1 - blocks that had arrived),
                                  // written through barrier[1]
    const int* stop_ids;          // [n_stop]
    int n_stop;
    int max_seq;
    int first_token;
    int position;                 // position of first_token
    int n_steps;
    unsigned epoch;               // the tag of the launch's first layer; layer l of step s has
                                  // epoch + s * N_LAYERS + l (the host never reuses one)
    int shared_bytes;             // dynamic shared memory of a block: Smem, then the weight ring
};
