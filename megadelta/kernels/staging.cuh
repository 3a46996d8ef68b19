// Weight staging: a block copies its share of the next weight-reading stage
// into shared memory (cp.async) at the start of the current one, so the weights
// stream from HBM while the block computes, waits at grid barriers and loads
// its input vector; the stage itself then reads its weights from shared memory.
//
// A stage's matrix is cut into units of R rows and each block owns a contiguous
// run of units. The staging area (dynamic shared memory) is used from both ends:
// consecutive weight stages alternate between the bottom and the top, so the
// stage being computed and the one being copied never overlap. Units that do not
// fit beside the current stage are read from global memory as before.
#pragma once
#include "common.cuh"

__device__ __forceinline__ unsigned char* staging_area();   // smem.cuh

// One block's share of a stage and where its staged part sits.
struct Stage {
    int unit0;          // first unit of this block
    int units;          // units of this block
    int staged;         // leading units that are staged
    unsigned offset;    // byte offset of the staged units in the staging area
};

// The stage whose copies are in flight, and which end the next one takes. Kept
// in shared memory (Smem::pipe): registers are the fused kernel's scarcest resource.
struct Pipeline {
    Stage pending;
    unsigned pending_bytes;
    int next_on_top;
};

template <int K, int R>
__device__ __forceinline__ Stage block_share(int n_rows) {
    const int n_units = (n_rows + R - 1) / R;
    const int u0 = (int)((long long)n_units * blockIdx.x / gridDim.x);
    const int u1 = (int)((long long)n_units * (blockIdx.x + 1) / gridDim.x);
    return {u0, u1 - u0, 0, 0u};
}

// Issue the copies of this block's share of W [n_rows, K] (at most `max_bytes`
// of it) into the free end of the staging area, closing a commit group (with
// any copies issued since the last one); pipe.pending describes them.
template <int K, int R>
__device__ __forceinline__ void stage_matrix(Pipeline& pipe, unsigned staging_bytes, const bf16_t* W,
                                             int n_rows, unsigned max_bytes = 0xffffffffu) {
    constexpr unsigned UNIT_BYTES = R * K * sizeof(bf16_t);
    Stage st = block_share<K, R>(n_rows);
    const unsigned room = min(staging_bytes - pipe.pending_bytes, max_bytes);
    st.staged = min(st.units, (int)(room / UNIT_BYTES));
    const unsigned bytes = st.staged * UNIT_BYTES;
    st.offset = pipe.next_on_top ? staging_bytes - bytes : 0u;
    // The last unit of the matrix may be short: copy only rows that exist.
    const int rows = max(0, min(st.staged * R, n_rows - st.unit0 * R));
    const char* src = reinterpret_cast<const char*>(W + (size_t)st.unit0 * R * K);
    const unsigned copy_bytes = rows * K * (unsigned)sizeof(bf16_t);
    for (unsigned i = thread_id() * 16u; i < copy_bytes; i += THREADS * 16u)
        copy_async16(staging_area() + st.offset + i, src + i);
    async_commit();
    __syncthreads();   // every thread has read `pipe` (and the stage's own descriptor) before it changes
    if (thread_id() == 0) {
        pipe.pending = st;
        pipe.pending_bytes = bytes;
        pipe.next_on_top = !pipe.next_on_top;
    }
}

// At the start of a weight stage, after it issued the next stage's copies: wait
// for this stage's (every group but the newest), then for the block's threads.
__device__ __forceinline__ void wait_staged() {
    async_wait_all_but_newest();
    __syncthreads();
}
