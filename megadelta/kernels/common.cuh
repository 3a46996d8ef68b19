// Shared building blocks of the decode megakernel: bf16 bit handling, loads,
// reductions and the grid-wide barrier. No CUDA headers are included, so the
// sources compile with NVRTC and no toolkit on the include path.
#pragma once
#include "model_constants.cuh"

#ifndef THREADS
#define THREADS 256   // kept in step with codegen.THREADS
#endif
#define WARPS (THREADS / 32)
// A block is THREADS compute threads and a warpgroup more, whose first warp is
// the weight ring's producer (staging.cuh); they never join the compute
// threads' barriers.
#define PRODUCER_WARPS 4
#define BLOCK_THREADS (THREADS + 32 * PRODUCER_WARPS)

// 12 warps leave each thread 168 registers (a quarter of the register file per
// SM sub-partition, three warps each). Where the architecture can move
// registers between warpgroups (setmaxnreg, sm_90a), the producer warpgroup
// gives most of its share to the compute warps: 232 each, as the fused stages
// need. Elsewhere the stages are built to fit 168 (smaller units, staging.cuh;
// the input vector in shared memory, matvec.cuh).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define REGISTER_HANDOFF 1
#else
#define REGISTER_HANDOFF 0
#endif
__device__ __forceinline__ void producer_registers() {
#if REGISTER_HANDOFF
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
#endif
}
__device__ __forceinline__ void compute_registers() {
#if REGISTER_HANDOFF
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
#endif
}

typedef unsigned short bf16_t;   // raw bfloat16 bits
typedef unsigned long long u64;

#define NEG_INF __int_as_float(0xff800000)

// The larger of two compile-time sizes.
template <class T>
constexpr T cmax(T a, T b) { return a > b ? a : b; }

// ---- thread coordinates ---------------------------------------------------
// Read through volatile asm so the compiler recomputes them where used instead
// of hoisting dozens of derived indices out of the step loop and keeping them
// live in registers across every stage (which made the fused kernel spill).
// The stages use these, never threadIdx.x directly.
__device__ __forceinline__ int lane_id() {
    int v;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(v));
    return v;
}
__device__ __forceinline__ int thread_id() {
    int v;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(v));
    return v;
}
__device__ __forceinline__ int warp_id() { return thread_id() >> 5; }
// This warp's index in the grid, and the grid's warp count.
__device__ __forceinline__ int grid_warp() {
    int block;
    asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(block));
    return block * WARPS + warp_id();
}
__device__ __forceinline__ int grid_warps() {
    int blocks;
    asm volatile("mov.u32 %0, %%nctaid.x;" : "=r"(blocks));
    return blocks * WARPS;
}

// The compute threads' block barrier (named barrier 1: the producer warp is not in it).
__device__ __forceinline__ void block_sync() { asm volatile("bar.sync 1, %0;" :: "n"(THREADS) : "memory"); }

// Before a stage polls words other blocks write: every warp of the block is
// through the work before it. A warp that polls issues global loads in a tight
// loop on the load/store pipeline that the block's slower warps need for their
// products' shared-memory reads; without this barrier their last units took up
// to 3x longer, and every other block waited for them (v24, docs/perf-notes.md).
__device__ __forceinline__ void settle_before_polling() { block_sync(); }

// ---- bf16 <-> float -------------------------------------------------------
__device__ __forceinline__ float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }

// Round to nearest even, as torch's float -> bfloat16 conversion does.
__device__ __forceinline__ bf16_t float_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

// ---- loads ----------------------------------------------------------------
// WEIGHT_L2_EVICT_FIRST: the weights' bulk copies (staging.cuh) mark them
// evict-first in L2, so the 1.5 GB streamed per step does not push out what is
// reused: activations, states, the KV cache and the kernel's own instructions.
#ifndef WEIGHT_L2_EVICT_FIRST
#define WEIGHT_L2_EVICT_FIRST 1
#endif
__device__ __forceinline__ u64 weight_l2_policy() {
    u64 policy;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    return policy;
}

// Data written by other blocks of the same launch (activations, KV cache):
// read at L2 (ld.global.cg) so a stale L1 line can never be seen.
__device__ __forceinline__ float load_shared_f32(const float* p) { return __ldcg(p); }
__device__ __forceinline__ uint4 load_shared16(const void* p) { return __ldcg((const uint4*)p); }

// ---- asynchronous copies into shared memory (cp.async, sm_80+) -------------
// A block's shared memory is all dynamic (struct Smem, then the weight ring:
// smem.cuh), so it may exceed the 48 KB static limit. A macro so the CPU
// emulator (cpu_emulation.h) can give each emulated block its own.
// SHARED_LINE: what a warp reads as 16 bytes a lane (512 bytes, a weight
// chunk step) takes 4 shared-memory wavefronts when it starts on a 128-byte
// line and 5 when it does not, and a 32-float row takes 1 or 2. The weight
// ring's pages and the arrays warps read whole rows of start on such a line:
// pages 96 bytes off it cost 7-8% of tg128 (v25, docs/perf-notes.md).
#define SHARED_LINE 128
extern __shared__ __align__(SHARED_LINE) unsigned char dynamic_shared[];
#define BLOCK_SHARED_BASE dynamic_shared

__device__ __forceinline__ unsigned shared_address(const void* p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (unsigned)a;
}

// The helpers below that take an `unsigned` take a shared-memory address
// (shared_address): the ring's producer computes its slots' addresses once,
// where a generic pointer costs a conversion at every use (one thread issues
// every page of the block: each instruction of its loop paces the weight stream).

// 16 bytes global -> shared, through L2 only; completes asynchronously.
__device__ __forceinline__ void copy_async16(unsigned dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void copy_async16(void* dst, const void* src) { copy_async16(shared_address(dst), src); }
// Wait for all of this thread's cp.async copies.
__device__ __forceinline__ void async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// ---- mbarriers (sm_80+) and Hopper's bulk copies -----------------------------
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define BULK_COPY 1
#else
#define BULK_COPY 0
#endif
__device__ __forceinline__ void mbarrier_init(u64* bar, unsigned arrivals) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" :: "r"(shared_address(bar)), "r"(arrivals) : "memory");
}
// Has the phase of this parity completed? (A waiter may be at most one phase ahead.)
// Hopper's try_wait may suspend the thread a while before it answers; before it, test_wait.
#define MBARRIER_TEST_WAIT "mbarrier.test_wait.parity.shared.b64"
#if BULK_COPY
#define MBARRIER_TEST_PARITY "mbarrier.try_wait.parity.shared::cta.b64"
#else
#define MBARRIER_TEST_PARITY MBARRIER_TEST_WAIT
#endif
// The phase's completion as 0 or 1, by the parity query `instruction`.
#define MBARRIER_PARITY_QUERY(instruction) \
    "{\n .reg .pred p;\n " instruction " p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
__device__ __forceinline__ bool mbarrier_done(unsigned bar, unsigned parity) {
    unsigned done;
    asm volatile(MBARRIER_PARITY_QUERY(MBARRIER_TEST_PARITY) : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    return done != 0;
}
// The same answer at once, never suspending: a look, not a wait.
__device__ __forceinline__ bool mbarrier_test(unsigned bar, unsigned parity) {
    unsigned done;
    asm volatile(MBARRIER_PARITY_QUERY(MBARRIER_TEST_WAIT) : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    return done != 0;
}
__device__ __forceinline__ void mbarrier_wait(unsigned bar, unsigned parity) {
    while (!mbarrier_done(bar, parity)) {}
}
__device__ __forceinline__ void mbarrier_wait(u64* bar, unsigned parity) { mbarrier_wait(shared_address(bar), parity); }
// `count` arrivals (release: this thread's earlier shared-memory reads are done).
__device__ __forceinline__ void mbarrier_arrive(unsigned bar, unsigned count) {
#if BULK_COPY
    asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(count) : "memory");
#else
    for (unsigned i = 0; i < count; ++i)
        asm volatile("{\n .reg .b64 state;\n mbarrier.arrive.shared.b64 state, [%0];\n}" :: "r"(bar) : "memory");
#endif
}
__device__ __forceinline__ void mbarrier_arrive(u64* bar, unsigned count) { mbarrier_arrive(shared_address(bar), count); }
// Before Hopper: an arrival when all of this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void mbarrier_arrive_on_copies(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" :: "r"(bar) : "memory");
}
#if BULK_COPY
// Arrive (the one expected arrival) and expect `bytes` of copies on the barrier's current phase.
__device__ __forceinline__ void mbarrier_expect_bytes(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_copy_to_shared(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    if (WEIGHT_L2_EVICT_FIRST)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                     " [%0], [%1], %2, [%3], %4;"
                     :: "r"(dst), "l"(src), "r"(bytes), "r"(bar), "l"(weight_l2_policy()) : "memory");
    else
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
#else   // before Hopper the ring's copies are cp.async; these are never called
__device__ __forceinline__ void mbarrier_expect_bytes(unsigned, unsigned) {}
__device__ __forceinline__ void bulk_copy_to_shared(unsigned, const void*, unsigned, unsigned) {}
#endif

// The ring's page numbers. The producer's store needs no ordering: a page's
// data is ordered by its slot's `full` barrier, which a reader waits on after
// it has seen the number (a release store cost a fence every page). The
// readers' loads acquire.
__device__ __forceinline__ void store_relaxed_shared(unsigned p, unsigned v) {
    asm volatile("st.relaxed.cta.shared.u32 [%0], %1;" :: "r"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void wait_shared_equal(const unsigned* p, unsigned v) {
    unsigned seen;
    do {
        asm volatile("ld.acquire.cta.shared.u32 %0, [%1];" : "=r"(seen) : "r"(shared_address(p)) : "memory");
    } while (seen != v);
}

// ---- tagged hand-offs between stages ---------------------------------------
// What a stage writes for other blocks to read (the input projections, the
// mixer's output, the attention partials, x after the mixer, the MLP's h, x)
// travels as 8-byte words: the float's bits and the tag of the layer that wrote
// it (Params::epoch plus the layer's index in the launch). A naturally aligned
// 8-byte store is single-copy atomic, so a reader that sees its tag sees the
// value with it: the writer needs no fence and the stages no grid barrier
// between them (the hand-off of NCCL's LL protocol). A reader spins on the
// words it needs and nothing else, so it starts as soon as they have landed,
// not when the slowest block of the grid is done (docs/megakernel.md).
__device__ __forceinline__ void publish(u64* p, float v, unsigned tag) {
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" :: "l"(p), "l"(((u64)tag << 32) | __float_as_uint(v))
                 : "memory");
}
__device__ __forceinline__ u64 load_tagged(const u64* p) {
    u64 w;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
    return w;
}
// Two adjacent words (16-byte aligned) in one load; each is still read whole.
__device__ __forceinline__ void load_tagged2(const u64* p, u64& a, u64& b) {
    asm volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
}
__device__ __forceinline__ bool has_tag(u64 w, unsigned tag) { return (unsigned)(w >> 32) == tag; }
__device__ __forceinline__ float tagged_value(u64 w) { return __uint_as_float((unsigned)w); }

// A wait this long (2^24 polls, each an L2 round trip) means the word will never
// be written: report it (progress = HANDOFF_TIMED_OUT, read by megakernel.py)
// and abort the launch rather than hang the GPU.
#define HANDOFF_MAX_POLLS (1u << 24)
#define HANDOFF_TIMED_OUT (-0x40000000)
__device__ __noinline__ void handoff_timed_out(u64* report) {
    *(volatile int*)report[1] = HANDOFF_TIMED_OUT;
    __threadfence_system();
    __trap();
}

// Until every word w[i] carries `tag`: those that do not are read again from
// at(i). The first reads are the caller's, all in flight together; `report` is
// Params::barrier, whose second word holds where a timeout is reported.
template <int N, class At>
__device__ __forceinline__ void await_tagged(u64 (&w)[N], unsigned tag, u64* report, At at) {
    for (unsigned polls = 0;; ++polls) {
        bool ready = true;
#pragma unroll
        for (int i = 0; i < N; ++i) ready &= has_tag(w[i], tag);
        if (ready) return;
        if (polls == HANDOFF_MAX_POLLS) handoff_timed_out(report);
#pragma unroll
        for (int i = 0; i < N; ++i)
            if (!has_tag(w[i], tag)) w[i] = load_tagged(at(i));
    }
}

// ---- math -----------------------------------------------------------------
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
// torch.nn.functional.softplus with its default threshold of 20.
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// 8 bf16 weights (one 16-byte chunk) dotted with the floats a (first 4) and b (last 4).
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b) {
    float s = bf16_lo(w.x) * a.x;
    s = fmaf(bf16_hi(w.x), a.y, s);
    s = fmaf(bf16_lo(w.y), a.z, s);
    s = fmaf(bf16_hi(w.y), a.w, s);
    s = fmaf(bf16_lo(w.z), b.x, s);
    s = fmaf(bf16_hi(w.z), b.y, s);
    s = fmaf(bf16_lo(w.w), b.z, s);
    s = fmaf(bf16_hi(w.w), b.w, s);
    return s;
}

// ... with 8 consecutive floats (16-byte aligned).
__device__ __forceinline__ float dot8(uint4 w, const float* x) {
    return dot8(w, *reinterpret_cast<const float4*>(x), *reinterpret_cast<const float4*>(x + 4));
}

__device__ __forceinline__ void unpack8(uint4 w, float* out) {
    out[0] = bf16_lo(w.x); out[1] = bf16_hi(w.x); out[2] = bf16_lo(w.y); out[3] = bf16_hi(w.y);
    out[4] = bf16_lo(w.z); out[5] = bf16_hi(w.z); out[6] = bf16_lo(w.w); out[7] = bf16_hi(w.w);
}

// Over each group of WIDTH lanes (a power of two up to 32).
template <int WIDTH = 32>
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = WIDTH / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <int WIDTH = 32>
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = WIDTH / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block; every thread gets the result. `scratch` holds WARPS floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = lane_id(), warp = warp_id();
    v = warp_sum(v);
    block_sync();                      // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    block_sync();
    float t = lane < WARPS ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

// ---- the output projection's claims (staging.cuh: Producer::give_claimed) --
// counter[OUTPUT_CLAIMS_AT], after the grid barrier's arrival counter and the
// report address: like the barrier's, never reset. Every step takes exactly
// CHUNKS + gridDim.x claims (each block claims until its first claim past the
// chunks), so claim v of a step is chunk v mod (CHUNKS + gridDim.x), and no
// block claims for the next step before every block is through this one's (the
// argmax's grid barrier lies between). Relaxed: a claim only hands out a number.
#define OUTPUT_CLAIMS_AT 2
__device__ __forceinline__ u64 claim_next(u64* counter) {
    u64 old;
    asm volatile("atom.add.relaxed.gpu.global.u64 %0, [%1], 1;" : "=l"(old) : "l"(counter + OUTPUT_CLAIMS_AT) : "memory");
    return old;
}

// ---- grid-wide barrier ----------------------------------------------------
// A 64-bit arrival counter that is never reset: barrier number b completes when
// the counter reaches b * gridDim.x. Each block adds 1 and waits for the next
// multiple of the grid size, so the counter stays a multiple of gridDim.x between
// launches (every block passes every barrier) and 2^64 arrivals never wrap.
// Release on arrival / acquire on the wait order every block's writes before
// the barrier with every block's reads after it.
__device__ __forceinline__ u64 load_acquire(const u64* p) {
    u64 v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ u64 arrive_release(u64* p) {
    u64 old;
    asm volatile("atom.add.release.gpu.global.u64 %0, [%1], 1;" : "=l"(old) : "l"(p) : "memory");
    return old;
}

// A wait this long (2^24 polls of ~0.5 us each, several seconds) means a block will
// never arrive (a bug, or blocks that are not co-resident): report the barrier
// state to the host and abort the launch rather than hang the GPU.
#define BARRIER_MAX_POLLS (1u << 24)

// Report how many blocks reached the barrier (-1 - arrived, through the
// host-mapped address in counter[1]) and abort the launch.
__device__ __noinline__ void barrier_timed_out(u64* counter) {
    *(volatile int*)counter[1] = -1 - (int)(load_acquire(counter) % gridDim.x);
    __threadfence_system();
    __trap();
}

// STAGE_CLOCK (timing builds only, megadelta.kernels.timing --stages): a
// stage is a layer or the output projection, numbered in the launch (step *
// (N_LAYERS + 1) + layer, the output projection last). Each block's thread 0
// marks where it begins each stage (stage_begin) and times the StagePoints it
// passes in it, in the order passed (up to STAGE_POINT_SLOTS), from that
// moment. From counter[STAGE_CLOCK_AT] (after the arrival counter and the
// report address), per stage number (mod STAGE_CLOCK_SLOTS): the
// longest and the summed duration over blocks (the host divides by the grid),
// then per point the maximum over blocks, the sum and the point's kind + 1.
// Besides, each block records, for the layers [UNIT_CLOCK_LAYER, +
// UNIT_CLOCK_LAYERS) of every step (the last step's stay), the global time it
// began each and passed each point with the point's kind + 1: the timeline,
// after the unit clock's words, [TIMELINE_BLOCKS][UNIT_CLOCK_LAYERS]
// [TIMELINE_RECORD], which says when one block's outputs reach
// another (durations from each block's own start cannot).
#ifndef STAGE_CLOCK
#define STAGE_CLOCK 0
#endif
#define STAGE_CLOCK_SLOTS 512
#define STAGE_POINT_SLOTS 16
#define STAGE_CLOCK_AT (OUTPUT_CLAIMS_AT + 1)
#define STAGE_CLOCK_WORDS (2 * STAGE_CLOCK_SLOTS + 3 * STAGE_POINT_SLOTS * STAGE_CLOCK_SLOTS)

enum StagePoint {
    POINT_DONE,     // every thread reached the grid barrier (the argmax's)
    POINT_LOADED,   // a vector from global memory is in registers (thread 0's part)
    POINT_NORMED,   // its norm is known (after the block reduction)
    POINT_PRODUCT,  // warp 0 is through its part of a matrix product
    POINT_AWAITED,  // a stage's tagged inputs have arrived (thread 0's, after its block's)
    POINT_PUBLISHED,  // a stage that is not a product has published its outputs (thread 0's part)
    STAGE_POINTS
};

__device__ __forceinline__ u64 global_timer_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// UNIT_CLOCK (timing builds only, megadelta.kernels.timing --units): block 0
// records, in the launch's second step and its layers [UNIT_CLOCK_LAYER,
// UNIT_CLOCK_LAYER + UNIT_CLOCK_LAYERS), the SM clock at five points of every
// unit of a matrix-vector product it takes (top of the unit, page had, sums
// reduced, page released, epilogue done), and for every page of the launch
// when its producer issued the copy: where a product's time goes, which the
// stage clock (a point per warp 0 and stage) cannot say. After the stage
// clock's words: a header (units recorded, the window's first page, the clock
// at the start of each of its layers and at its end), then UNIT_CLOCK_UNITS
// records of 8 words (rows | columns << 32 of the matrix, page | unit << 32, warp, 5 clocks),
// then UNIT_CLOCK_PAGES (page, clock) pairs.
#ifndef UNIT_CLOCK
#define UNIT_CLOCK 0
#endif
#define UNIT_CLOCK_LAYER 4
#define UNIT_CLOCK_LAYERS 4
#define UNIT_CLOCK_HEADER 8
#define UNIT_CLOCK_UNITS 2048
#define UNIT_CLOCK_PAGES 8192
#define UNIT_CLOCK_WORDS (UNIT_CLOCK_HEADER + 8 * UNIT_CLOCK_UNITS + 2 * UNIT_CLOCK_PAGES)
#define UNIT_CLOCK_AT (STAGE_CLOCK_AT + STAGE_CLOCK_WORDS)

__device__ __forceinline__ u64* unit_clock_words(u64* counter) { return counter + UNIT_CLOCK_AT; }
#define TIMELINE_BLOCKS 256
#define TIMELINE_RECORD (1 + 2 * STAGE_POINT_SLOTS)
#define TIMELINE_AT (UNIT_CLOCK_AT + UNIT_CLOCK_WORDS)
// This block's timeline record of stage `number`, or null outside the window.
__device__ __forceinline__ u64* stage_timeline(u64* counter, unsigned number) {
    const int k = (int)(number % (N_LAYERS + 1)) - UNIT_CLOCK_LAYER;
    if (k < 0 || k >= UNIT_CLOCK_LAYERS || blockIdx.x >= TIMELINE_BLOCKS) return nullptr;
    return counter + TIMELINE_AT + ((size_t)blockIdx.x * UNIT_CLOCK_LAYERS + k) * TIMELINE_RECORD;
}

// When this block began its current stage, the stage's number, the clock's
// words (Params::barrier; null before the first stage), the points passed
// since and where its timeline goes (null outside the window).
struct StageStart {
    u64 time;
    unsigned number;
    u64* counter;
    unsigned points;
    u64* timeline;
};
__device__ __forceinline__ StageStart& stage_start() {
    __shared__ StageStart start;
    return start;
}

__device__ __forceinline__ void stage_point(StagePoint point) {
    if (STAGE_CLOCK && thread_id() == 0) {
        StageStart& start = stage_start();
        const u64 elapsed = global_timer_ns() - start.time;
        const unsigned k = start.points++;
        if (start.counter == nullptr || k >= STAGE_POINT_SLOTS) return;
        u64* slot = start.counter + STAGE_CLOCK_AT + 2 * STAGE_CLOCK_SLOTS
                    + (start.number % STAGE_CLOCK_SLOTS) * 3 * STAGE_POINT_SLOTS + 3 * k;
        atomicMax(slot, elapsed);
        atomicAdd(slot + 1, elapsed);
        slot[2] = point + 1;
        if (start.timeline != nullptr) {
            start.timeline[1 + 2 * k] = start.time + elapsed;
            start.timeline[2 + 2 * k] = point + 1;
        }
    }
}

// Thread 0, as the block begins stage `number` (or, past the last, ends the launch's last stage).
__device__ __forceinline__ void stage_begin(u64* counter, unsigned number) {
    if (STAGE_CLOCK && thread_id() == 0) {
        StageStart& start = stage_start();
        const u64 now = global_timer_ns();
        if (start.counter != nullptr) {
            u64* pair = counter + STAGE_CLOCK_AT + 2 * (start.number % STAGE_CLOCK_SLOTS);
            atomicMax(pair, now - start.time);
            atomicAdd(pair + 1, now - start.time);
        }
        start = {now, number, counter, 0u, stage_timeline(counter, number)};
        if (start.timeline != nullptr) start.timeline[0] = now;
    }
}

// At launch: no stage has begun.
__device__ __forceinline__ void stage_clock_init() {
    if (STAGE_CLOCK && thread_id() == 0) stage_start() = {0u, 0u, nullptr, 0u, nullptr};
}

// Where block 0 records now (null when it does not), set by unit_clock_layer.
__device__ __forceinline__ u64*& unit_clock_target() {
    __shared__ u64* target;
    return target;
}
__device__ __forceinline__ u64 sm_clock() {
    u64 t;
    asm volatile("mov.u64 %0, %%clock64;" : "=l"(t));
    return t;
}

// Thread 0 at the start of each layer (a block barrier follows before any product).
__device__ __forceinline__ void unit_clock_layer(u64* counter, int step, int layer, unsigned page) {
    if (!UNIT_CLOCK || thread_id() != 0) return;
    u64* words = unit_clock_words(counter);
    const int k = layer - UNIT_CLOCK_LAYER;   // the window's layers, then its end
    const bool clocked = blockIdx.x == 0 && step == 1 && k >= 0 && k <= UNIT_CLOCK_LAYERS;
    if (clocked) words[2 + k] = sm_clock();
    if (clocked && k == 0) words[1] = page;
    unit_clock_target() = clocked && k < UNIT_CLOCK_LAYERS ? words : nullptr;
}
// The window ends with the step's last layer at the latest.
__device__ __forceinline__ void unit_clock_stop(u64* counter, int step) { unit_clock_layer(counter, step, N_LAYERS, 0); }

// Lane 0 of a warp, after a unit's epilogue.
__device__ __forceinline__ void unit_clock_unit(int rows, int columns, unsigned page, int unit, const u64 (&t)[5]) {
    u64* words = UNIT_CLOCK ? unit_clock_target() : nullptr;
    if (words == nullptr || lane_id() != 0) return;
    const unsigned n = atomicAdd(reinterpret_cast<unsigned*>(words), 1u);
    if (n >= UNIT_CLOCK_UNITS) return;
    u64* e = words + UNIT_CLOCK_HEADER + 8 * (size_t)n;
    e[0] = rows | (u64)columns << 32;
    e[1] = page | ((u64)unit << 32);
    e[2] = warp_id();
#pragma unroll
    for (int i = 0; i < 5; ++i) e[3 + i] = t[i];
}

// The producer, as it issues page `page` (block 0's, while the record has room).
__device__ __forceinline__ void unit_clock_page(u64* counter, unsigned page) {
    if (!UNIT_CLOCK || blockIdx.x != 0 || page >= UNIT_CLOCK_PAGES) return;
    u64* e = unit_clock_words(counter) + UNIT_CLOCK_HEADER + 8 * UNIT_CLOCK_UNITS + 2 * (size_t)page;
    e[0] = page;
    e[1] = sm_clock();
}

// counter[0] counts arrivals; counter[1] holds the host-mapped address the
// timeout report goes to (set once by the host).
__device__ __forceinline__ void grid_barrier(u64* counter) {
    block_sync();
    stage_point(POINT_DONE);
    if (thread_id() == 0) {
        const u64 n = gridDim.x;
        const u64 target = (arrive_release(counter) / n + 1) * n;
        for (unsigned polls = 0; load_acquire(counter) < target; ++polls)
            if (polls == BARRIER_MAX_POLLS) barrier_timed_out(counter);
    }
    block_sync();
}
