// CPU stand-in for common.cuh and the CUDA built-ins the kernel uses, so the
// unchanged stage sources compile with g++ and run one std::thread per CUDA
// thread (megadelta/kernels/emulate.py; in the producer warpgroup all but lane 0
// of its first warp return at once, as on Hopper). __syncthreads, block_sync and __syncwarp are
// std::barriers, shuffles go through a per-warp exchange array, the grid
// barrier is a seq_cst atomic counter. It checks the kernel's logic, indexing
// and synchronisation structure on a machine with no GPU; it says nothing
// about speed or about the GPU memory model.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#define __device__
#define __forceinline__ inline
#define __noinline__
#define __global__
#define __launch_bounds__(threads, blocks)
#define __constant__ static
#define __align__(n) alignas(n)

#include "model_constants.cuh"

#ifndef THREADS
#define THREADS 128
#endif
#define WARPS (THREADS / 32)
#define PRODUCER_WARPS 4
#define BLOCK_THREADS (THREADS + 32 * PRODUCER_WARPS)
#define REGISTER_HANDOFF 1   // the sm_90a build's unit sizes
#define SHARED_LINE 128      // the layout of struct Smem and the ring (alignment only speeds the GPU)
inline void producer_registers() {}
inline void compute_registers() {}

typedef unsigned short bf16_t;
typedef unsigned long long u64;
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct Index { unsigned x; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
template <class T>
constexpr T cmax(T a, T b) { return a > b ? a : b; }

struct EmulatedGrid {
    std::vector<std::barrier<>*> all_thread_barriers;   // one per block
    std::vector<std::barrier<>*> block_barriers;   // one per block, compute threads
    std::vector<std::barrier<>*> warp_barriers;    // one per warp of the grid
    std::vector<float> exchange_f;                  // 32 slots per warp
    std::vector<int> exchange_i;
    std::vector<std::vector<unsigned char>> shared; // one buffer per block: Smem, then the staging area
};
extern EmulatedGrid* emulated_grid;
extern thread_local Index threadIdx, blockIdx;
extern Index gridDim;

#define NEG_INF (-std::numeric_limits<float>::infinity())
#define BLOCK_SHARED_BASE (emulated_grid->shared[blockIdx.x].data())

using std::max;
using std::min;
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __sinf(float x) { return std::sin(x); }

inline int lane_id() { return threadIdx.x & 31; }
inline int thread_id() { return threadIdx.x; }
inline int warp_id() { return threadIdx.x >> 5; }
inline int grid_warp() { return blockIdx.x * WARPS + warp_id(); }
inline int grid_warps() { return gridDim.x * WARPS; }

// __syncthreads: every thread of the block (the producer warp too); block_sync: the compute threads.
inline void __syncthreads() { emulated_grid->all_thread_barriers[blockIdx.x]->arrive_and_wait(); }
inline void block_sync() { emulated_grid->block_barriers[blockIdx.x]->arrive_and_wait(); }
inline void settle_before_polling() { block_sync(); }
inline void __syncwarp() { emulated_grid->warp_barriers[grid_warp()]->arrive_and_wait(); }
template <class T>
inline T exchange(std::vector<T>& slots, T v, int lane) {
    T* warp_slots = &slots[(size_t)grid_warp() * 32];
    __syncwarp();
    warp_slots[lane_id()] = v;
    __syncwarp();
    const T r = warp_slots[lane];
    __syncwarp();
    return r;
}
inline float __shfl_xor_sync(unsigned, float v, int o) { return exchange(emulated_grid->exchange_f, v, lane_id() ^ o); }
inline int __shfl_xor_sync(unsigned, int v, int o) { return exchange(emulated_grid->exchange_i, v, lane_id() ^ o); }
inline float __shfl_sync(unsigned, float v, int src) { return exchange(emulated_grid->exchange_f, v, src); }
inline void __trap() { std::abort(); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <class T>
inline T __ldcg(const T* p) { return std::atomic_ref<T>(*const_cast<T*>(p)).load(); }
// Read-only data (weights): plain reads.
template <class T>
inline T __ldg(const T* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
inline float4 __ldcg(const float4* p) {
    std::atomic_thread_fence(std::memory_order_acquire);
    float4 v;
    std::memcpy(&v, p, 16);
    return v;
}

inline float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
inline float bf16_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
inline bf16_t float_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}
inline float load_shared_f32(const float* p) { return __ldcg(p); }
inline uint4 load_shared16(const void* p) {
    std::atomic_thread_fence(std::memory_order_acquire);
    uint4 v;
    std::memcpy(&v, p, 16);
    return v;
}
// A shared-memory address is the offset into the block's buffer.
inline unsigned shared_address(const void* p) {
    return (unsigned)(static_cast<const unsigned char*>(p) - BLOCK_SHARED_BASE);
}
template <class T>
inline T* shared_pointer(unsigned address) { return reinterpret_cast<T*>(BLOCK_SHARED_BASE + address); }
// Copies complete at once on the CPU; the waits only need the block barrier that follows them.
inline void copy_async16(void* dst, const void* src) { std::memcpy(dst, src, 16); }
inline void copy_async16(unsigned dst, const void* src) { copy_async16(shared_pointer<void>(dst), src); }
inline void async_wait_all() {}
// The Hopper path (what the H100 runs): a bulk copy lands at once. An mbarrier
// is (phase << 32 | arrivals << 16 | expected arrivals); the waits check that
// a consumer waits for the phase that delivers its unit.
#define BULK_COPY 1
inline void mbarrier_init(u64* bar, unsigned arrivals) { *bar = arrivals; }
inline void mbarrier_arrive(u64* bar, unsigned count) {
    std::atomic_ref<u64> b(*bar);
    u64 old = b.load(), next;
    do {
        const u64 expected = old & 0xffffu, arrived = ((old >> 16) & 0xffffu) + count;
        next = arrived >= expected ? (((old >> 32) + 1) << 32) | expected : (old & ~0xffff0000ull) | (arrived << 16);
    } while (!b.compare_exchange_weak(old, next));
    b.notify_all();
}
inline bool mbarrier_done(u64* bar, unsigned parity) {
    const bool done = ((std::atomic_ref<u64>(*bar).load() >> 32) & 1u) != parity;
    if (!done) std::this_thread::yield();
    return done;
}
inline bool mbarrier_done(unsigned bar, unsigned parity) { return mbarrier_done(shared_pointer<u64>(bar), parity); }
inline bool mbarrier_test(unsigned bar, unsigned parity) { return mbarrier_done(bar, parity); }
inline void mbarrier_arrive(unsigned bar, unsigned count) { mbarrier_arrive(shared_pointer<u64>(bar), count); }
// Waiters sleep until the barrier changes (hundreds of spinning threads would starve the producer).
inline void mbarrier_wait(u64* bar, unsigned parity) {
    std::atomic_ref<u64> b(*bar);
    for (u64 seen = b.load(); ((seen >> 32) & 1u) == parity; seen = b.load()) b.wait(seen);
}
inline void mbarrier_wait(unsigned bar, unsigned parity) { mbarrier_wait(shared_pointer<u64>(bar), parity); }
inline void mbarrier_arrive_on_copies(unsigned bar) { mbarrier_arrive(bar, 1); }
inline void mbarrier_expect_bytes(unsigned, unsigned) {}   // the copy arrives when it lands
inline void bulk_copy_to_shared(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    std::memcpy(shared_pointer<void>(dst), src, bytes);
    mbarrier_arrive(bar, 1);
}
inline void store_relaxed_shared(unsigned p, unsigned v) {
    std::atomic_ref<unsigned> a(*shared_pointer<unsigned>(p));
    a.store(v);
    a.notify_all();
}
inline void wait_shared_equal(const unsigned* p, unsigned v) {
    std::atomic_ref<unsigned> a(*const_cast<unsigned*>(p));
    for (unsigned seen = a.load(); seen != v; seen = a.load()) a.wait(seen);
}
// Tagged words: one 8-byte atomic each (relaxed, as on the GPU); a waiter yields between polls.
inline void publish(u64* p, float v, unsigned tag) {
    std::atomic_ref<u64>(*p).store(((u64)tag << 32) | __float_as_uint(v), std::memory_order_relaxed);
}
inline u64 load_tagged(const u64* p) {
    return std::atomic_ref<u64>(*const_cast<u64*>(p)).load(std::memory_order_relaxed);
}
inline void load_tagged2(const u64* p, u64& a, u64& b) {
    a = load_tagged(p);
    b = load_tagged(p + 1);
}
inline bool has_tag(u64 w, unsigned tag) { return (unsigned)(w >> 32) == tag; }
inline float tagged_value(u64 w) { return __uint_as_float((unsigned)w); }
template <int N, class At>
inline void await_tagged(u64 (&w)[N], unsigned tag, u64*, At at) {
    for (;;) {
        bool ready = true;
        for (int i = 0; i < N; ++i) ready &= has_tag(w[i], tag);
        if (ready) return;
        std::this_thread::yield();
        for (int i = 0; i < N; ++i)
            if (!has_tag(w[i], tag)) w[i] = load_tagged(at(i));
    }
}
inline float silu(float x) { return x / (1.0f + expf(-x)); }
inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
inline float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
inline void unpack8(uint4 w, float* out) {
    out[0] = bf16_lo(w.x); out[1] = bf16_hi(w.x); out[2] = bf16_lo(w.y); out[3] = bf16_hi(w.y);
    out[4] = bf16_lo(w.z); out[5] = bf16_hi(w.z); out[6] = bf16_lo(w.w); out[7] = bf16_hi(w.w);
}
inline float dot8(uint4 w, const float* x) {
    float v[8];
    unpack8(w, v);
    float s = v[0] * x[0];
    for (int i = 1; i < 8; ++i) s = fmaf(v[i], x[i], s);
    return s;
}
inline float dot8(uint4 w, float4 a, float4 b) {
    const float x[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    return dot8(w, x);
}
template <int WIDTH = 32>
inline float warp_sum(float v) {
    for (int o = WIDTH / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <int WIDTH = 32>
inline float warp_max(float v) {
    for (int o = WIDTH / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
inline float block_sum(float v, float* scratch) {
    v = warp_sum(v);
    block_sync();
    if (lane_id() == 0) scratch[warp_id()] = v;
    block_sync();
    return warp_sum(lane_id() < WARPS ? scratch[lane_id()] : 0.0f);
}
// STAGE_CLOCK builds are GPU-only (they read the global timer).
enum StagePoint { POINT_DONE, POINT_LOADED, POINT_NORMED, POINT_PRODUCT, POINT_AWAITED, POINT_PUBLISHED, STAGE_POINTS };
inline void stage_point(StagePoint) {}
inline void stage_clock_init() {}
inline void stage_begin(u64*, unsigned) {}
// UNIT_CLOCK builds are GPU-only too.
#define UNIT_CLOCK 0
inline u64 sm_clock() { return 0; }
inline void unit_clock_layer(u64*, int, int, unsigned) {}
inline void unit_clock_stop(u64*, int) {}
inline void unit_clock_unit(int, int, unsigned, int, const u64 (&)[5]) {}
inline void unit_clock_page(u64*, unsigned) {}
#define OUTPUT_CLAIMS_AT 2
inline u64 claim_next(u64* counter) { return std::atomic_ref<u64>(counter[OUTPUT_CLAIMS_AT]).fetch_add(1); }
inline void grid_barrier(u64* counter) {
    block_sync();
    if (threadIdx.x == 0) {
        std::atomic_ref<u64> arrivals(*counter);
        const u64 n = gridDim.x;
        const u64 target = (arrivals.fetch_add(1) / n + 1) * n;
        while (arrivals.load() < target) std::this_thread::yield();
    }
    block_sync();
}
