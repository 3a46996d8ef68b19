// Weight staging: a ring of unit-sized slots in shared memory, filled by the
// block's producer warp and emptied by its compute warps.
//
// Every weight matrix a step reads is cut into units of R rows, and each block
// owns a contiguous run of units of each matrix (block_share). The order in
// which a block reads its units over a whole launch is fixed (steps, layers,
// then in_proj, out_proj, gate/up, down; the output projection last), so the
// producer walks that order on its own, one unit per slot, as far ahead as the
// ring has free slots: the weights stream in while the compute warps wait at
// grid barriers, load vectors or finish the previous stage, across any number
// of stages. Unit u of the block's sequence goes to slot u % slots.
//
// The producer keeps at most UNITS_IN_FLIGHT copies outstanding: enough for
// HBM to stream at full rate (Little's law: ~3 TB/s x ~1 us over 132 SMs is
// ~24 KB an SM), few enough that the grid barrier's arrivals and the stages'
// vector loads do not queue behind a whole stage's worth of weight reads
// (docs/perf-notes.md, v15).
//
// Per slot: `full` completes when the unit has landed (the producer's arrival
// with its byte count on Hopper, each producer lane's cp.async arrival before),
// `empty` when the WARPS warps that read it have released it, and `unit` names
// the unit the slot holds. Consumers wait for `unit` first: only then is the
// slot's `full` barrier at most one phase behind the unit they want, which a
// parity wait needs (a warp may run more than a ring ahead of another).
#pragma once
#include "common.cuh"

// 16-byte chunks a lane reads per unit (R rows of K columns: R * K / 256 = UNIT_CHUNKS),
// all loaded before any is used.
#ifndef UNIT_CHUNKS
#define UNIT_CHUNKS (REGISTER_HANDOFF ? 8 : 4)
#endif
#ifndef UNITS_IN_FLIGHT
#define UNITS_IN_FLIGHT 8
#endif
#define RING_SLOTS_MAX 64

// Rows a unit holds for a given K: UNIT_CHUNKS chunks a lane, so short rows are
// taken several at a time.
template <int K>
struct RowsPerWarp {
    static constexpr int chunks = K / 256;
    static constexpr int value = chunks >= UNIT_CHUNKS ? 1 : UNIT_CHUNKS / chunks;
};

// The shapes of the matrices, in one place for the producer and the stages.
constexpr int R_IN = RowsPerWarp<HIDDEN>::value;                  // in_proj, the output projection
constexpr int R_OUT_DELTANET = RowsPerWarp<VALUE_DIM>::value;     // out_proj
constexpr int R_OUT_ATTENTION = RowsPerWarp<Q_SIZE>::value;       // o_proj
// gate/up: whole (gate, up) row pairs; a unit of W_down^T holds the rows of the same h entries.
constexpr int UP_ROWS = R_IN < 2 ? 2 : R_IN;
constexpr int DOWN_ROWS = UP_ROWS / 2;
static_assert(UP_ROWS % 2 == 0, "a warp must own whole (gate, up) row pairs");

constexpr int cmax(int a, int b) { return a > b ? a : b; }
constexpr unsigned SLOT_BYTES = 2u * cmax(cmax(R_IN * HIDDEN, R_OUT_DELTANET * VALUE_DIM),
                                          cmax(R_OUT_ATTENTION * Q_SIZE, UP_ROWS * HIDDEN));

// One block's share of a matrix and where its units sit in the block's sequence.
struct Stage {
    int unit0;          // first unit of this block
    int units;          // units of this block
    unsigned seq0;      // the block's sequence number of unit0
};

struct Ring {
    u64 full[RING_SLOTS_MAX];
    u64 empty[RING_SLOTS_MAX];
    unsigned unit[RING_SLOTS_MAX];
    unsigned slots;
    volatile int stop;   // the compute warps are done (a stop token can end a launch early)
};

__device__ __forceinline__ unsigned char* ring_area();   // smem.cuh

// All BLOCK_THREADS threads, before the producer warp parts.
__device__ __forceinline__ void init_ring(Ring& ring, unsigned area_bytes) {
    if (thread_id() == 0) {
        ring.slots = min(RING_SLOTS_MAX, (int)(area_bytes / SLOT_BYTES));
        if (ring.slots < 2) __trap();   // every GPU it runs on has room for dozens
        ring.stop = 0;
        for (int i = 0; i < RING_SLOTS_MAX; ++i) {
            mbarrier_init(&ring.full[i], BULK_COPY ? 1 : 32);
            mbarrier_init(&ring.empty[i], WARPS);
            ring.unit[i] = ~0u;
        }
    }
    __syncthreads();
}

template <int R>
__device__ __forceinline__ Stage block_share(int n_rows, unsigned seq0) {
    const int n_units = (n_rows + R - 1) / R;
    const int u0 = (int)((long long)n_units * blockIdx.x / gridDim.x);
    const int u1 = (int)((long long)n_units * (blockIdx.x + 1) / gridDim.x);
    return {u0, u1 - u0, seq0};
}

// A thread's place in the block's unit sequence: the compute threads take each
// matrix's share in the producer's order.
struct WeightStream {
    unsigned next = 0;
    template <int R>
    __device__ __forceinline__ Stage take(int n_rows) {
        const Stage st = block_share<R>(n_rows, next);
        next += st.units;
        return st;
    }
};

__device__ __forceinline__ const bf16_t* slot_weights(const Ring& ring, unsigned slot) {
    return reinterpret_cast<const bf16_t*>(ring_area() + (size_t)slot * SLOT_BYTES);
}

// Compute side: wait until unit `u` of the sequence has landed; its slot.
__device__ __forceinline__ unsigned acquire_unit(Ring& ring, unsigned u) {
    const unsigned slot = u % ring.slots;
    wait_shared_equal(&ring.unit[slot], u);
    mbarrier_wait(&ring.full[slot], (u / ring.slots) & 1u);
    return slot;
}

// Compute side, once the warp's lanes have read the slot: `count` of its WARPS releases.
__device__ __forceinline__ void release_slot(Ring& ring, unsigned slot, unsigned count) {
    __syncwarp();
    if (lane_id() == 0) mbarrier_arrive(&ring.empty[slot], count);
}

// ---- the producer warp ----------------------------------------------------------
struct Producer {
    Ring& ring;
    unsigned next = 0;   // units issued so far

    // Wait for a phase unless the compute warps have finished (then nothing more is read).
    __device__ __forceinline__ bool wait_or_stop(u64* bar, unsigned parity) {
        while (!mbarrier_done(bar, parity))
            if (ring.stop) return false;
        return true;
    }

    // Issue this block's share of W [n_rows, K]; false once the compute warps have finished.
    template <int K, int R>
    __device__ __forceinline__ bool give(const bf16_t* W, int n_rows) {
        const Stage st = block_share<R>(n_rows, next);
        const unsigned slots = ring.slots, in_flight = min(UNITS_IN_FLIGHT, (int)slots - 1);
        for (int j = 0; j < st.units; ++j, ++next) {
            const unsigned slot = next % slots;
            if (next >= slots && !wait_or_stop(&ring.empty[slot], (next / slots - 1) & 1u)) return false;
            if (next >= in_flight) {   // the copy in_flight units back has landed
                const unsigned old = next - in_flight;
                mbarrier_wait(&ring.full[old % slots], (old / slots) & 1u);
            }
            // The last unit of the matrix may be short: copy only rows that exist.
            const int row0 = (st.unit0 + j) * R;
            const unsigned bytes = min(R, n_rows - row0) * K * (unsigned)sizeof(bf16_t);
            unsigned char* dst = ring_area() + (size_t)slot * SLOT_BYTES;
            const char* src = reinterpret_cast<const char*>(W + (size_t)row0 * K);
            if (lane_id() == 0) store_release_shared(&ring.unit[slot], next);
            if (BULK_COPY) {
                fence_proxy_async();   // the compute warps' reads of the slot come before the engine's writes
                mbarrier_expect_bytes(&ring.full[slot], bytes);
                bulk_copy_to_shared(dst, src, bytes, &ring.full[slot]);
            } else {
                for (unsigned i = lane_id() * 16u; i < bytes; i += 32u * 16u) copy_async16(dst + i, src + i);
                mbarrier_arrive_on_copies(&ring.full[slot]);
            }
        }
        return true;
    }

    // No copy may outlive the launch: wait for those still in flight.
    __device__ __forceinline__ void drain() {
        const unsigned slots = ring.slots, in_flight = min(UNITS_IN_FLIGHT, (int)slots - 1);
        for (unsigned u = next > in_flight ? next - in_flight : 0u; u < next; ++u)
            mbarrier_wait(&ring.full[u % slots], (u / slots) & 1u);
    }
};
