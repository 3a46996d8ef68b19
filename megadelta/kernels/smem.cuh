// Shared memory of one block, one struct for all stages (they run one after another).
// Arrays read as float4 or written by cp.async are 16-byte aligned, those
// warps read rows of start on a shared-memory line (common.cuh: SHARED_LINE).
#pragma once
#include "params.cuh"
#include "staging.cuh"

struct Smem {
    __align__(SHARED_LINE) float vec[VEC_MAX];               // input vector of the current matrix-vector product
    float scratch[32];                         // block reductions
    // The residual stream as this block loaded it: the layer's input until the
    // mixer's output projection adds to it, then x after the mixer until the
    // MLP's down product adds to that (each block reads its rows' residuals
    // here, not from global memory).
    __align__(SHARED_LINE) float residual[HIDDEN];
    // Gated DeltaNet recurrence
    float dn_q[DN_KEY_DIM];                    // L2-normalised, scaled query of the item's key head
    float dn_k[DN_KEY_DIM];                    // L2-normalised key
    float dn_partial[2][WARPS][32];            // per-warp partial sums of S^T k and S^T q
    // attention
    __align__(SHARED_LINE) float att_q[QUERIES_PER_KV][HEAD_DIM];   // normed, rotated, pre-scaled queries of one kv head
    __align__(16) bf16_t att_k[HEAD_DIM];                    // this position's key and value, as cached
    __align__(16) bf16_t att_v[HEAD_DIM];
    float att_acc[QUERIES_PER_KV][HEAD_DIM];   // block-combined softmax numerators
    float att_max[WARPS][QUERIES_PER_KV];
    float att_sum[WARPS][QUERIES_PER_KV];
    float att_block_max[QUERIES_PER_KV];
    // argmax
    float best_val[WARPS];
    int best_idx[WARPS];
    __align__(SHARED_LINE) float dn_tile[DN_KEY_DIM][32];   // staged DeltaNet state tile of the block's first item
    Ring ring;                                 // weight staging (staging.cuh)
};

// Smem sits at the start of the block's dynamic shared memory (line-aligned),
// the ring's slots after it, from the next line on.
constexpr unsigned RING_OFFSET = (sizeof(Smem) + SHARED_LINE - 1) / SHARED_LINE * SHARED_LINE;
__device__ __forceinline__ Smem& block_smem() { return *reinterpret_cast<Smem*>(BLOCK_SHARED_BASE); }
__device__ __forceinline__ unsigned char* ring_area() { return BLOCK_SHARED_BASE + RING_OFFSET; }
__device__ __forceinline__ unsigned ring_bytes(const Params& p) { return p.shared_bytes - RING_OFFSET; }
