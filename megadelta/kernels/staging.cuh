// Weight staging: a ring of pages in shared memory, filled by the block's
// producer warp and emptied by its compute warps.
//
// Every weight matrix a step reads is cut into units of R rows, and each block
// owns a contiguous run of units of each matrix (block_units), cut into pages
// of up to PAGE_BYTES (as many whole units as fit, contiguous in global memory:
// one bulk copy a page).
// The order in which a block reads its pages over a whole launch is fixed
// (steps, layers, then in_proj, out_proj, gate/up, down; the output projection
// last), so the producer walks that order on its own, one page per slot, as far
// ahead as the ring has free slots: the weights stream in while the compute
// warps wait at grid barriers, load vectors or finish the previous stage, across
// any number of stages. Page q of the block's sequence goes to slot q % slots.
//
// How many copies the producer keeps outstanding paces the weight stream, and
// the pace is a trade: fewer copies in flight stream slower, more load the
// memory system that every hand-off between blocks goes through. So the limit
// follows the compute warps' lead: PAGES_IN_FLIGHT (2) while the ring holds at
// least SHORT_LEAD_PAGES landed or landing pages ahead of them, and
// PAGES_IN_FLIGHT_SHORT (4) once they have released the page that many behind
// the producer's next, that is once they will soon wait for weights
// (+0.8-1.3% tg128 over a fixed 3 on the H100, v34 in docs/perf-notes.md).
// The producer thread's loop paces the stream too (150 more clocks a page cost
// 13% of tg128): it keeps the ring's addresses and slot count in registers, so
// that these limits set the pace rather than its own length.
// Pages rather than units per copy: one thread issues the copies, and at one
// 4 KB unit per copy its loop (two mbarrier waits, a page-number store, the copy)
// could not keep up with an SM's share of HBM (v15 in docs/perf-notes.md).
//
// Per slot: `full` completes when the page has landed (the producer's arrival
// with its byte count on Hopper, each producer lane's cp.async arrival before),
// `empty` when its units' readers have released it (UNITS_CAP x WARPS
// arrivals: a unit's one reading warp arrives WARPS times, or each of the WARPS
// warps once; the producer arrives for the units a page does not hold), and
// `page` names the page the slot holds. Consumers wait for
// `page` first: only then is the slot's `full` barrier at most one phase behind
// the page they want, which a parity wait needs (a warp may run more than a
// ring ahead of another).
#pragma once
#include "common.cuh"

// 16-byte chunks a lane reads per unit (R rows of K columns: R * K / 256 = UNIT_CHUNKS),
// all loaded before any is used.
#ifndef UNIT_CHUNKS
#define UNIT_CHUNKS (REGISTER_HANDOFF ? 8 : 4)
#endif
// Pages are 8 KB (v15c in docs/perf-notes.md), or the largest unit where a
// unit is larger (PAGE_BYTES below; the 2B config's W_down rows: 12 KB).
#ifndef PAGE_BYTES_MIN
#define PAGE_BYTES_MIN 8192u
#endif
#ifndef PAGES_IN_FLIGHT
#define PAGES_IN_FLIGHT 2
#endif
#ifndef PAGES_IN_FLIGHT_SHORT
#define PAGES_IN_FLIGHT_SHORT 4
#endif
#ifndef SHORT_LEAD_PAGES
#define SHORT_LEAD_PAGES 6
#endif
// The output projection (a third of a step's bytes) runs alone, bound by HBM,
// with no hand-off waiting behind its copies: it keeps more in flight (183 ->
// 179 us a step on the H100, v22 in docs/perf-notes.md).
#ifndef OUTPUT_PAGES_IN_FLIGHT
#define OUTPUT_PAGES_IN_FLIGHT 8
#endif
#define RING_SLOTS_MAX 64

// Rows a unit holds for a given K: UNIT_CHUNKS chunks a lane, so short rows are
// taken several at a time.
template <int K>
struct RowsPerWarp {
    static constexpr int chunks = K / 256;
    static constexpr int value = chunks >= UNIT_CHUNKS ? 1 : UNIT_CHUNKS / chunks;
};

// A weight matrix as the ring streams it: ROWS rows of K columns, in units of
// R rows. The producer (Producer::give), the compute warps' share of it
// (WeightStream::take) and the product over it (matvec) name the same one of
// these, so they cannot disagree on a shape.
template <int K_, int R_, int ROWS_>
struct Matrix {
    static constexpr int K = K_, R = R_, ROWS = ROWS_;
    static constexpr unsigned UNIT_BYTES = 2u * R * K;
};

constexpr int R_IN = RowsPerWarp<HIDDEN>::value;
// gate/up: whole (gate, up) row pairs, so a warp has both halves of an entry of h.
constexpr int UP_ROWS = R_IN < 2 ? 2 : R_IN;
static_assert(UP_ROWS % 2 == 0, "a warp must own whole (gate, up) row pairs");

using DeltaNetInProj = Matrix<HIDDEN, R_IN, DN_PROJ_ROWS>;                          // [qkv | z | b | a]
using AttentionInProj = Matrix<HIDDEN, R_IN, ATTN_PROJ_ROWS>;                       // [(q, gate) | k | v]
using DeltaNetOutProj = Matrix<VALUE_DIM, RowsPerWarp<VALUE_DIM>::value, HIDDEN>;   // out_proj
using AttentionOutProj = Matrix<Q_SIZE, RowsPerWarp<Q_SIZE>::value, HIDDEN>;        // o_proj
using GateUp = Matrix<HIDDEN, UP_ROWS, 2 * INTERMEDIATE>;                           // gate and up rows interleaved
using Down = Matrix<INTERMEDIATE, RowsPerWarp<INTERMEDIATE>::value, HIDDEN>;        // W_down
using OutputProjection = Matrix<HIDDEN, R_IN, VOCAB>;                               // the tied embedding

template <class... M>
constexpr unsigned unit_bytes_max() { unsigned b = 0; ((b = M::UNIT_BYTES > b ? M::UNIT_BYTES : b), ...); return b; }
template <class... M>
constexpr unsigned unit_bytes_min() { unsigned b = ~0u; ((b = M::UNIT_BYTES < b ? M::UNIT_BYTES : b), ...); return b; }
constexpr unsigned UNIT_BYTES_MAX = unit_bytes_max<DeltaNetInProj, AttentionInProj, DeltaNetOutProj,
                                                   AttentionOutProj, GateUp, Down, OutputProjection>();
constexpr unsigned UNIT_BYTES_MIN = unit_bytes_min<DeltaNetInProj, AttentionInProj, DeltaNetOutProj,
                                                   AttentionOutProj, GateUp, Down, OutputProjection>();
constexpr unsigned PAGE_BYTES = cmax<unsigned>(PAGE_BYTES_MIN, UNIT_BYTES_MAX);   // an int option (-DPAGE_BYTES_MIN=16384) builds too
constexpr int UNITS_CAP = PAGE_BYTES / UNIT_BYTES_MIN;   // units a page holds at most
// Units of matrix M a page holds.
template <class M>
constexpr int UNITS_PER_PAGE = PAGE_BYTES / M::UNIT_BYTES;

// The output projection, HBM-bound and the step's last stage, ends when its
// slowest block does, and blocks stream at different rates (the slowest 7.7 us
// behind the mean of 161, stage clock at v38). So each block takes an even
// static share of its first rows and the last CLAIMED_OUTPUT_64THS / 64 are
// claimed at run time, a chunk at a time, by whichever producer asks first:
// a chunk is PAGES pages of one unit per compute warp, and after the last chunk
// every block's producer gives PAGES pages more that say so (Ring::unit0 -1).
#ifndef CLAIMED_OUTPUT_64THS
#define CLAIMED_OUTPUT_64THS 4
#endif
template <class M>
struct Claims {
    static constexpr int UPP = UNITS_PER_PAGE<M>;
    static constexpr int PAGES = WARPS / UPP, UNITS = WARPS;
    static constexpr int ALL_UNITS = (M::ROWS + M::R - 1) / M::R;
    // Only where whole pages make a chunk (not the 2B config's 12 KB pages of
    // three units), and on Hopper (the end pages' token copies are bulk copies).
    static constexpr bool ON = BULK_COPY && WARPS % UPP == 0;
    static constexpr int CHUNKS = ON ? ALL_UNITS * CLAIMED_OUTPUT_64THS / 64 / UNITS : 0;
    static constexpr int STATIC_UNITS = ALL_UNITS - CHUNKS * UNITS;   // units [0, STATIC_UNITS) are dealt out
    using Static = Matrix<M::K, M::R, STATIC_UNITS * M::R < M::ROWS ? STATIC_UNITS * M::R : M::ROWS>;
};

// Where page q of the block's sequence sits: slot q % slots, and how often the
// ring has wrapped before it (its lap; the parity of its slot's phases). The
// hot loops move it along instead of dividing by the ring's run-time slot count
// per page (a division is a ~20-instruction dependent chain, and one thread
// issues every page of the block).
struct RingPos {
    unsigned slot, lap;
    __device__ __forceinline__ void advance(unsigned pages, unsigned slots) {
        slot += pages;
        while (slot >= slots) {   // once at most while pages < slots
            slot -= slots;
            ++lap;
        }
    }
    // Where the page `pages` (< slots, and no more than this page's number) before this one sits.
    __device__ __forceinline__ RingPos behind(unsigned pages, unsigned slots) const {
        return slot >= pages ? RingPos{slot - pages, lap} : RingPos{slot + slots - pages, lap - 1};
    }
};
__device__ __forceinline__ RingPos ring_pos(unsigned page, unsigned slots) { return {page % slots, page / slots}; }

// One block's share of a matrix and where its pages sit in the block's sequence.
struct Stage {
    int unit0;          // first unit of this block
    int units;          // units of this block
    unsigned page0;     // the block's sequence number of the page holding unit0
};

struct Ring {
    u64 full[RING_SLOTS_MAX];
    u64 empty[RING_SLOTS_MAX];
    unsigned page[RING_SLOTS_MAX];
    unsigned slots;
    volatile int stop;   // the compute warps are done (a stop token can end a launch early)
    int unit0[RING_SLOTS_MAX];   // a claimed page's first unit, -1 past the last chunk (Claims)
};

__device__ __forceinline__ unsigned char* ring_area();   // smem.cuh

// All BLOCK_THREADS threads, before the producer warp parts.
__device__ __forceinline__ void init_ring(Ring& ring, unsigned area_bytes) {
    if (thread_id() == 0) {
        ring.slots = min(RING_SLOTS_MAX, (int)(area_bytes / PAGE_BYTES));
        if (ring.slots < 2) __trap();   // every GPU it runs on has room for dozens
        ring.stop = 0;
        for (int i = 0; i < RING_SLOTS_MAX; ++i) {
            mbarrier_init(&ring.full[i], BULK_COPY ? 1 : 32);
            mbarrier_init(&ring.empty[i], UNITS_CAP * WARPS);
            ring.page[i] = ~0u;
        }
    }
    __syncthreads();
}

// The units [u0, u1) of a matrix of n_rows rows in units of R that this block owns.
template <int R>
__device__ __forceinline__ void block_units(int n_rows, int& u0, int& u1) {
    const int n_units = (n_rows + R - 1) / R;
    u0 = (int)((long long)n_units * blockIdx.x / gridDim.x);
    u1 = (int)((long long)n_units * (blockIdx.x + 1) / gridDim.x);
}

// A thread's place in the block's page sequence: the compute threads take each
// matrix's share in the producer's order.
struct WeightStream {
    unsigned next = 0;
    template <class M>
    __device__ __forceinline__ Stage take() {
        int u0, u1;
        block_units<M::R>(M::ROWS, u0, u1);
        const Stage st{u0, u1 - u0, next};
        next += (st.units + UNITS_PER_PAGE<M> - 1) / UNITS_PER_PAGE<M>;
        return st;
    }
};

// Compute side: a warp's walk over the pages of one share, in order (one
// division a share, for its first page's place in the ring).
template <class M>
struct PageCursor {
    unsigned page0;      // the share's first page
    unsigned page = 0;   // pages past it
    RingPos pos;
    __device__ __forceinline__ PageCursor(const Stage& st, const Ring& ring)
        : page0(st.page0), pos(ring_pos(st.page0, ring.slots)) {}

    // Wait until the page holding unit j of the share (j no lower than at the
    // last call) has landed; the slot, and the unit's weights in `unit`.
    __device__ __forceinline__ unsigned acquire(Ring& ring, int j, const bf16_t*& unit) {
        constexpr int UPP = UNITS_PER_PAGE<M>;
        const unsigned to = j / UPP;
        pos.advance(to - page, ring.slots);
        page = to;
        wait_shared_equal(&ring.page[pos.slot], page0 + page);
        mbarrier_wait(&ring.full[pos.slot], pos.lap & 1u);
        unit = reinterpret_cast<const bf16_t*>(ring_area() + (size_t)pos.slot * PAGE_BYTES) + (size_t)(j % UPP) * M::R * M::K;
        return pos.slot;
    }
};

// Compute side, once the warp's lanes have read its unit: `count` of the slot's releases.
__device__ __forceinline__ void release_slot(Ring& ring, unsigned slot, unsigned count) {
    __syncwarp();
    if (lane_id() == 0) mbarrier_arrive(&ring.empty[slot], count);
}

// ---- the producer warp ----------------------------------------------------------
struct Producer {
    Ring& ring;
    u64* counters;              // Params::barrier: the claims' counter, UNIT_CLOCK builds' words
    // The ring as shared-memory addresses and its slot count, once (common.cuh).
    const unsigned slots = ring.slots;
    const unsigned full0 = shared_address(&ring.full[0]), empty0 = shared_address(&ring.empty[0]);
    const unsigned page0 = shared_address(&ring.page[0]), area0 = shared_address(ring_area());
    unsigned next = 0;          // pages issued so far
    unsigned in_flight = 0;     // of which not yet retired (seen landed)
    RingPos at{0u, 0u};         // where page `next` goes
    RingPos oldest{0u, 0u};     // the oldest page whose copy may still be in flight

    __device__ __forceinline__ unsigned full(unsigned slot) const { return full0 + slot * (unsigned)sizeof(u64); }
    __device__ __forceinline__ unsigned empty(unsigned slot) const { return empty0 + slot * (unsigned)sizeof(u64); }
    __device__ __forceinline__ unsigned page(unsigned slot) const { return page0 + slot * (unsigned)sizeof(unsigned); }

    // Wait for a phase unless the compute warps have finished (then nothing more is read).
    __device__ __forceinline__ bool wait_or_stop(unsigned bar, unsigned parity) {
        while (!mbarrier_done(bar, parity))
            if (ring.stop) return false;
        return true;
    }

    // Wait until the oldest copy in flight has landed.
    __device__ __forceinline__ void retire_oldest() {
        mbarrier_wait(full(oldest.slot), oldest.lap & 1u);
        oldest.advance(1, slots);
        --in_flight;
    }

    // Issue this block's share of W, shaped M, with at most `pages_in_flight`
    // copies outstanding (PAGES_IN_FLIGHT_SHORT if more, while the compute warps'
    // lead is short; always fewer than the ring's slots, so that the page waited
    // for is the latest its slot has held); false once the compute warps have finished.
    template <class M>
    __device__ __forceinline__ bool give(const bf16_t* W, int pages_in_flight = PAGES_IN_FLIGHT) {
        constexpr int UPP = UNITS_PER_PAGE<M>;
        int u0, u1;
        block_units<M::R>(M::ROWS, u0, u1);
        const unsigned most = min(pages_in_flight, (int)slots - 1);
        const unsigned most_short = max(most, min((unsigned)PAGES_IN_FLIGHT_SHORT, slots - 1));
        for (int u = u0; u < u1; u += UPP) {
            if (!open_slot(most, most_short)) return false;
            give_units<M>(W, u, min(UPP, u1 - u));
        }
        return true;
    }

    // The output projection's chunks that this block claims (Claims), then the
    // pages that say there are no more; false once the compute warps have finished.
    template <class M>
    __device__ __forceinline__ bool give_claimed(const bf16_t* W, int pages_in_flight) {
        using C = Claims<M>;
        const unsigned most = min(pages_in_flight, (int)slots - 1);
        const unsigned most_short = max(most, min((unsigned)PAGES_IN_FLIGHT_SHORT, slots - 1));
        const unsigned claims_a_step = C::CHUNKS + gridDim.x;
        unsigned chunk = (unsigned)(claim_next(counters) % claims_a_step);
        for (;;) {
            const bool over = chunk >= (unsigned)C::CHUNKS;
            // The next claim's round trip overlaps this chunk's copies.
            const unsigned following = over ? 0u : (unsigned)(claim_next(counters) % claims_a_step);
            for (int i = 0; i < C::PAGES; ++i) {
                if (!open_slot(most, most_short)) return false;
                const int u = C::STATIC_UNITS + (int)chunk * C::UNITS + i * C::UPP;
                ring.unit0[at.slot] = over ? -1 : u;   // ordered by the producer's arrival on `full`
                if (over)   // a token copy (16 bytes): the page only says the chunks are over
                    give_page(reinterpret_cast<const char*>(W), 16u, C::UPP);
                else
                    give_units<M>(W, u, C::UPP);
            }
            if (over) return true;
            chunk = following;
        }
    }

    // Wait until page `next`'s slot is free and the copies in flight are under
    // the limit; false once the compute warps have finished.
    __device__ __forceinline__ bool open_slot(unsigned most, unsigned most_short) {
        if (at.lap > 0 && !wait_or_stop(empty(at.slot), (at.lap - 1) & 1u)) return false;
        // Has the compute warps' lead grown short (page next - SHORT_LEAD_PAGES
        // released: the release of a page of lap L completes its slot's `empty`
        // phase of parity L)? Warp-uniform: before Hopper every producer lane
        // runs this loop, and all must agree.
        unsigned limit = most;
        if (SHORT_LEAD_PAGES < slots && next >= SHORT_LEAD_PAGES) {
            const RingPos back = at.behind(SHORT_LEAD_PAGES, slots);
            bool short_lead = mbarrier_test(empty(back.slot), back.lap & 1u);
            if (!BULK_COPY) short_lead = __shfl_sync(0xffffffffu, (int)short_lead, 0) != 0;
            if (short_lead) limit = most_short;
        }
        while (in_flight >= limit) retire_oldest();
        return true;
    }

    // Copy `units` units of W, shaped M, from unit u into page `next`'s slot
    // (the matrix's last unit may be short: only rows that exist).
    template <class M>
    __device__ __forceinline__ void give_units(const bf16_t* W, int u, int units) {
        const int row0 = u * M::R;
        give_page(reinterpret_cast<const char*>(W + (size_t)row0 * M::K),
                  min(units * M::R, M::ROWS - row0) * M::K * (unsigned)sizeof(bf16_t), units);
    }

    // Copy `bytes` from src into page `next`'s slot, whose readers take `units` units.
    __device__ __forceinline__ void give_page(const char* src, unsigned bytes, int units) {
        const unsigned slot = at.slot;
        const unsigned dst = area0 + slot * PAGE_BYTES;
        // The units a page does not hold are released now.
        if (BULK_COPY || lane_id() == 0) {
            if (units < UNITS_CAP) mbarrier_arrive(empty(slot), (UNITS_CAP - units) * WARPS);
            store_relaxed_shared(page(slot), next);
        }
        unit_clock_page(counters, next);
        if (BULK_COPY) {
            mbarrier_expect_bytes(full(slot), bytes);
            bulk_copy_to_shared(dst, src, bytes, full(slot));
        } else {
            for (unsigned i = lane_id() * 16u; i < bytes; i += 32u * 16u) copy_async16(dst + i, src + i);
            mbarrier_arrive_on_copies(full(slot));
        }
        ++next;
        ++in_flight;
        at.advance(1, slots);
    }

    // No copy may outlive the launch: wait for those still in flight.
    __device__ __forceinline__ void drain() {
        while (in_flight > 0) retire_oldest();
    }
};
