// Weight staging: a block copies its share of the next weight-reading stage
// into shared memory during the current one (once the current stage's own input
// loads are out), so the weights stream from HBM while the block computes and
// waits at grid barriers; the stage itself then reads its weights from shared memory.
//
// On Hopper (sm_90) one thread hands the whole share to the bulk-copy engine
// (cp.async.bulk, completion counted in bytes on an mbarrier): nothing blocks.
// Before Hopper every thread issues 16-byte cp.async copies, which stall once
// the SM's outstanding-request limit is reached (measured: docs/perf-notes.md v4).
//
// A stage's matrix is cut into units of R rows and each block owns a contiguous
// run of units. The staging area (dynamic shared memory) is used from both ends:
// consecutive weight stages alternate between the bottom and the top, so the
// stage being computed and the one being copied never overlap. Units that do not
// fit beside the current stage are read from global memory.
#pragma once
#include "common.cuh"

__device__ __forceinline__ unsigned char* staging_area();   // smem.cuh

// One block's share of a stage and where its staged part sits.
struct Stage {
    int unit0;          // first unit of this block
    int units;          // units of this block
    int staged;         // leading units that are staged
    unsigned offset;    // byte offset of the staged units in the staging area
    int end;            // 0: bottom, 1: top of the staging area (selects the mbarrier)
    unsigned parity;    // the mbarrier phase that completes when the copy has landed
};

// The stage whose copies are in flight, which end the next one takes, and per
// end an mbarrier and how many copies it has counted. Kept in shared memory
// (Smem::pipe): stage_matrix updates it between two block barriers.
struct Pipeline {
    u64 landed[2];
    unsigned uses[2];
    Stage pending;
    unsigned pending_bytes;
    int next_on_top;
};

__device__ __forceinline__ void init_pipeline(Pipeline& pipe) {
    if (thread_id() == 0) {
        pipe.uses[0] = pipe.uses[1] = 0;
        pipe.pending = {0, 0, 0, 0u, 0, 0u};
        pipe.pending_bytes = 0;
        pipe.next_on_top = 0;
        mbarrier_init(&pipe.landed[0]);
        mbarrier_init(&pipe.landed[1]);
    }
    __syncthreads();
}

template <int R>
__device__ __forceinline__ Stage block_share(int n_rows) {
    const int n_units = (n_rows + R - 1) / R;
    const int u0 = (int)((long long)n_units * blockIdx.x / gridDim.x);
    const int u1 = (int)((long long)n_units * (blockIdx.x + 1) / gridDim.x);
    return {u0, u1 - u0, 0, 0u, 0, 0u};
}

// Copy `bytes` (a multiple of 16, 16-byte aligned) to the staging area, counted on `landed`.
__device__ __forceinline__ void copy_to_staging(unsigned char* dst, const void* src, unsigned bytes, u64* landed) {
    if (BULK_COPY) {
        if (thread_id() == 0) {
            fence_proxy_async();   // earlier generic reads of this memory come before the engine's writes
            mbarrier_expect_bytes(landed, bytes);
            bulk_copy_to_shared(dst, src, bytes, landed);
        }
    } else {
        const char* from = reinterpret_cast<const char*>(src);
        for (unsigned i = thread_id() * 16u; i < bytes; i += THREADS * 16u) copy_async16(dst + i, from + i);
    }
}

// Issue the copies of this block's share of W [n_rows, K] (at most `max_bytes`
// of it) into the free end of the staging area; pipe.pending describes them.
// Closes a cp.async commit group (with any cp.async copies issued since the last).
template <int K, int R>
__device__ __forceinline__ void stage_matrix(Pipeline& pipe, unsigned staging_bytes, const bf16_t* W,
                                             int n_rows, unsigned max_bytes = 0xffffffffu) {
    constexpr unsigned UNIT_BYTES = R * K * sizeof(bf16_t);
    Stage st = block_share<R>(n_rows);
    const unsigned room = min(staging_bytes - pipe.pending_bytes, max_bytes);
    st.staged = min(st.units, (int)(room / UNIT_BYTES));
    const unsigned bytes = st.staged * UNIT_BYTES;
    st.end = pipe.next_on_top;
    st.offset = st.end ? staging_bytes - bytes : 0u;
    st.parity = pipe.uses[st.end] & 1u;
    // The last unit of the matrix may be short: copy only rows that exist.
    const int rows = max(0, min(st.staged * R, n_rows - st.unit0 * R));
    const unsigned copy_bytes = rows * K * (unsigned)sizeof(bf16_t);
    if (copy_bytes > 0)
        copy_to_staging(staging_area() + st.offset, W + (size_t)st.unit0 * R * K, copy_bytes, &pipe.landed[st.end]);
    async_commit();
    __syncthreads();   // every thread has read `pipe` (and the stage's own descriptor) before it changes
    if (thread_id() == 0) {
        pipe.pending = st;
        pipe.pending_bytes = bytes;
        pipe.next_on_top = !pipe.next_on_top;
        if (copy_bytes > 0) ++pipe.uses[st.end];
    }
    __syncthreads();   // every thread sees the new `pipe` (a stage may read pipe.pending next)
    stage_point(POINT_ISSUED);
}

// At the start of a weight stage, after it issued the next stage's copies and
// wrote its input vector: wait until this stage's copies have landed, then for
// every thread (the input vector and, before Hopper, each thread's copies).
__device__ __forceinline__ void wait_staged(Pipeline& pipe, const Stage& st) {
    stage_point(POINT_INPUT);
    if (BULK_COPY) {
        if (st.staged > 0) mbarrier_wait(&pipe.landed[st.end], st.parity);
    } else {
        async_wait_all_but_newest();
    }
    __syncthreads();
    stage_point(POINT_LANDED);
}

// No copy may outlive the launch (the last step staged a next step that never runs).
__device__ __forceinline__ void drain_staging(Pipeline& pipe) {
    async_wait_all();
    const Stage last = pipe.pending;
    if (BULK_COPY && last.staged > 0) mbarrier_wait(&pipe.landed[last.end], last.parity);
}
