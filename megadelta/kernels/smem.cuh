// Shared memory of one block, one struct for all stages (they run one after another).
#pragma once
#include "common.cuh"

struct Smem {
    float vec[VEC_MAX];                        // input vector of the current matrix-vector product
    float scratch[32];                         // block reductions
    // Gated DeltaNet recurrence
    float dn_q[DN_KEY_DIM];                    // L2-normalised, scaled query of the item's key head
    float dn_k[DN_KEY_DIM];                    // L2-normalised key
    float dn_partial[2][WARPS][32];            // per-warp partial sums of S^T k and S^T q
    // attention
    float att_q[QUERIES_PER_KV][HEAD_DIM];     // normed, rotated, pre-scaled queries of one kv head
    bf16_t att_k[HEAD_DIM];                    // this position's key and value, as cached
    bf16_t att_v[HEAD_DIM];
    float att_acc[QUERIES_PER_KV][HEAD_DIM];   // block-combined softmax numerators
    float att_max[WARPS][QUERIES_PER_KV];
    float att_sum[WARPS][QUERIES_PER_KV];
    // argmax
    float best_val[WARPS];
    int best_idx[WARPS];
};
