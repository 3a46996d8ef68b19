// Batch-1 matrix-vector products: W is [n_rows, K] row-major bf16, x a K-vector
// of floats in shared memory.
//
// Each block owns a contiguous run of units of R rows (staging.cuh) and reads
// them from the weight ring in order; its warps take the units round robin.
// Lane l reads the 16-byte chunks l, l+32, ... of each row, so a warp reads 512
// contiguous bytes per chunk step. The R row sums are reduced with shuffles
// (every lane gets them) and handed to `epi(row0, sums, in)`, which must ignore
// rows >= n_rows; `in` holds the row's inputs from global memory (RowInputs below).
#pragma once
#include "smem.cuh"

// ---- the input vector ------------------------------------------------------
// Lane l multiplies columns c*256 + 8l + [0, 8) of every 256-column chunk c (its
// 16-byte weight chunk). In shared memory the vector is stored permuted, column
// c*256 + 8l + 4h + j at c*256 + 128h + 4l + j, so those 8 floats are two float4s
// that the 32 lanes read contiguously: 4 shared-memory wavefronts per 512 bytes,
// where the natural order (32-byte lane stride) takes 8.
__device__ __forceinline__ int vec_slot(int i) {
    const int r = i & 255;
    return (i & ~255) | ((r & 4) << 5) | ((r >> 3) << 2) | (r & 3);
}

// What a lane reads of the input vector. Up to K = 2048 (64 floats a lane; 512
// without the register hand-off, common.cuh) it is read into registers once
// per stage, all loads in flight together, and reused for every unit, so the
// shared memory pipe only carries weights; longer vectors stay in shared
// memory. 2048 rather than 1024 put the 0.8B model's out_proj and o_proj
// inputs in registers: +2.6-3.6% tg128 (v26, docs/perf-notes.md); 4096 (W_down's
// input as well, one unit a warp) gained nothing more.
#ifndef VEC_IN_REGISTERS_MAX
#define VEC_IN_REGISTERS_MAX (REGISTER_HANDOFF ? 2048 : 512)
#endif
// Chunks of each of a unit's R rows that a lane loads before any math (a load
// group of unit_sums): UNIT_CHUNKS in all, at least one a row.
template <int R>
constexpr int GROUP_CHUNKS_MAX = cmax(UNIT_CHUNKS / R, 1);
// Held floats are indexed by constants only, so a product holds its vector
// only where one load group spans all K columns.
template <int K, int R>
constexpr bool VECTOR_IN_REGISTERS = K <= VEC_IN_REGISTERS_MAX && K / 256 <= GROUP_CHUNKS_MAX<R>;

template <int K, bool IN_REGISTERS>
struct InputVector {
    static constexpr int CHUNKS = K / 256;
    const float4* xs;
    float4 held[IN_REGISTERS ? 2 * CHUNKS : 1];

    __device__ __forceinline__ explicit InputVector(const float* x) : xs(reinterpret_cast<const float4*>(x)) {
        if constexpr (IN_REGISTERS) {
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) {
                held[2 * c] = xs[c * 64 + lane_id()];
                held[2 * c + 1] = xs[c * 64 + 32 + lane_id()];
            }
        }
    }
    // Chunk c's weights (this lane's 16 bytes) dotted with the matching 8 floats.
    __device__ __forceinline__ float dot(uint4 w, int c) const {
        if constexpr (IN_REGISTERS) return dot8(w, held[2 * c], held[2 * c + 1]);
        else return dot8(w, xs[c * 64 + lane_id()], xs[c * 64 + 32 + lane_id()]);
    }
};

// ---- per-row inputs of the epilogue ------------------------------------------
// Some epilogues read global memory per output row (the DeltaNet projection's
// conv state and weights). Those loads are issued for a batch of the warp's units at once,
// the first batch before the stage even loads its input vector, so their round
// trip overlaps the stage's own instead of following each unit: lane l holds the
// inputs of row l % R of the warp's (l / R)-th unit of the batch, and the
// epilogue gets its row's inputs by shuffle. `Rows` says what to load:
//   static constexpr int N;                              floats per row
//   __device__ void load(int row, float (&in)[N]) const  (row < n_rows)
template <int N>
struct RowInputs {
    float v[N > 0 ? N : 1];
};

struct NoRowInputs {
    static constexpr int N = 0;
    __device__ __forceinline__ void load(int, float (&)[1]) const {}
};

// The inputs of the warp's units [batch * 32/R, (batch + 1) * 32/R) of share st of M.
template <class M, class Rows>
__device__ __forceinline__ RowInputs<Rows::N> fetch_row_inputs(const Stage& st, const Rows& rows, int batch) {
    constexpr int R = M::R, n_rows = M::ROWS;
    static_assert(32 % R == 0, "a batch holds whole units");
    RowInputs<Rows::N> in{};
    if constexpr (Rows::N > 0) {
        const int j = warp_id() + (batch * (32 / R) + lane_id() / R) * WARPS;
        const int row = (st.unit0 + j) * R + lane_id() % R;
        if (j < st.units && row < n_rows) rows.load(row, in.v);
    }
    return in;
}

// ---- the product -----------------------------------------------------------
// sums[r] += W[r, 256 c0 : 256 (c0 + N)] . x for the R rows at W: all R x N
// loads first, then the math. Every row of a unit has its place in the page,
// so rows past the matrix's end (the last unit may be short) are read too:
// their sums are garbage that every epilogue ignores. No condition may guard
// the math: a per-row branch around each chunk's 8-deep FMA chain made the
// chunks run one after another (~900 clocks a unit on the H100, v23).
template <int K, int R, int N, class Vector>
__device__ __forceinline__ void accumulate_chunks(const bf16_t* __restrict__ W, int c0,
                                                  const Vector& x, float (&sums)[R]) {
    const int lane = lane_id();
    uint4 w[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int g = 0; g < N; ++g)
            w[r][g] = *reinterpret_cast<const uint4*>(W + (size_t)r * K + (c0 + g) * 256 + lane * 8);
#pragma unroll
    for (int g = 0; g < N; ++g)
#pragma unroll
        for (int r = 0; r < R; ++r) sums[r] += x.dot(w[r][g], c0 + g);
}

// The R row sums of one unit whose rows start at W.
template <int K, int R, class Vector>
__device__ __forceinline__ void unit_sums(const bf16_t* __restrict__ W, const Vector& x, float (&sums)[R]) {
    constexpr int CHUNKS = K / 256;                                  // 16-byte chunks per lane per row
    constexpr int GROUP = CHUNKS < GROUP_CHUNKS_MAX<R> ? CHUNKS : GROUP_CHUNKS_MAX<R>;   // chunks a row a group
    constexpr int FULL_GROUPS = CHUNKS / GROUP, TAIL = CHUNKS % GROUP;
    static_assert(!VECTOR_IN_REGISTERS<K, R> || (FULL_GROUPS == 1 && TAIL == 0),
                  "a vector held in registers is indexed by constants only");
#pragma unroll
    for (int r = 0; r < R; ++r) sums[r] = 0.0f;
    if constexpr (FULL_GROUPS == 1) {
        accumulate_chunks<K, R, GROUP>(W, 0, x, sums);
    } else {
        // Not unrolled: the compiler would hoist the next group's loads over this
        // group's math and run out of registers.
#pragma unroll 1
        for (int group = 0; group < FULL_GROUPS; ++group)
            accumulate_chunks<K, R, GROUP>(W, group * GROUP, x, sums);
    }
    if constexpr (TAIL > 0) accumulate_chunks<K, R, TAIL>(W, FULL_GROUPS * GROUP, x, sums);
#pragma unroll
    for (int r = 0; r < R; ++r) sums[r] = warp_sum(sums[r]);
}

// sums[lane] in lanes < R (after the shuffles every lane holds every row's sum),
// so R rows' epilogues run side by side.
template <int R>
__device__ __forceinline__ float sum_of_lane(const float* sums) {
    float y = sums[0];
#pragma unroll
    for (int r = 1; r < R; ++r)
        if (lane_id() == r) y = sums[r];
    return y;
}

// This block's share `st` (taken as M) of W . xs; `first` is
// fetch_row_inputs<M>(st, rows, 0).
template <class M, class Rows, class Epilogue>
__device__ __forceinline__ void matvec(const Stage& st, Ring& ring, const float* xs, const Rows& rows,
                                       RowInputs<Rows::N> first, Epilogue epi) {
    constexpr int K = M::K, R = M::R;
    static_assert(K % 256 == 0, "K must be a multiple of 256");
    constexpr int BATCH = 32 / R;
    const InputVector<K, VECTOR_IN_REGISTERS<K, R>> x(xs);
    RowInputs<Rows::N> batch = first;
    PageCursor<M> pages(st, ring);
    int k = 0;   // this warp's units so far
#pragma unroll 1   // one unit at a time: the loads in flight are the unit's
    for (int j = warp_id(); j < st.units; j += WARPS, ++k) {
        u64 clock[5];   // UNIT_CLOCK builds only (common.cuh)
        if (UNIT_CLOCK) clock[0] = sm_clock();
        if (k > 0 && k % BATCH == 0) batch = fetch_row_inputs<M>(st, rows, k / BATCH);
        const int row0 = (st.unit0 + j) * R;
        float sums[R];
        const bf16_t* unit;
        const unsigned slot = pages.acquire(ring, j, unit);
        if (UNIT_CLOCK) clock[1] = sm_clock();
        unit_sums<K, R>(unit, x, sums);
        if (UNIT_CLOCK) clock[2] = sm_clock();
        release_slot(ring, slot, WARPS);   // the sums are reduced: every lane's loads are done
        if (UNIT_CLOCK) clock[3] = sm_clock();
        RowInputs<Rows::N> in{};
#pragma unroll
        for (int i = 0; i < Rows::N; ++i)
            in.v[i] = __shfl_sync(0xffffffffu, batch.v[i], (k % BATCH) * R + lane_id() % R);
        epi(row0, sums, in);
        if (UNIT_CLOCK) {
            __syncwarp();
            clock[4] = sm_clock();
            unit_clock_unit(M::ROWS, M::K, st.page0 + j / UNITS_PER_PAGE<M>, j, clock);
        }
    }
    stage_point(POINT_PRODUCT);
}

// The claimed chunks of M (staging.cuh: Claims) that this block's producer
// gives from page `page0` of its sequence on, until the pages that say there
// are no more: each warp takes the one unit of a chunk that is its own. The
// pages it read, end pages included.
template <class M, class Epilogue>
__device__ __forceinline__ unsigned matvec_claimed(Ring& ring, unsigned page0, const float* xs, Epilogue epi) {
    using C = Claims<M>;
    constexpr int K = M::K, R = M::R;
    const InputVector<K, VECTOR_IN_REGISTERS<K, R>> x(xs);
    const int warp = warp_id();
    for (unsigned chunk = 0;; ++chunk) {
        const unsigned page = page0 + chunk * C::PAGES + warp / C::UPP;
        const RingPos pos = ring_pos(page, ring.slots);
        wait_shared_equal(&ring.page[pos.slot], page);
        mbarrier_wait(&ring.full[pos.slot], pos.lap & 1u);
        const int unit0 = ring.unit0[pos.slot];
        if (unit0 < 0) {
            release_slot(ring, pos.slot, WARPS);
            return (chunk + 1) * C::PAGES;
        }
        const bf16_t* unit = reinterpret_cast<const bf16_t*>(ring_area() + (size_t)pos.slot * PAGE_BYTES)
                             + (size_t)(warp % C::UPP) * R * K;
        float sums[R];
        unit_sums<K, R>(unit, x, sums);
        release_slot(ring, pos.slot, WARPS);
        epi((unit0 + warp % C::UPP) * R, sums, RowInputs<0>{});
    }
}

// The same without per-row inputs.
template <class M, class Epilogue>
__device__ __forceinline__ void matvec(const Stage& st, Ring& ring, const float* xs, Epilogue epi) {
    matvec<M>(st, ring, xs, NoRowInputs{}, RowInputs<0>{}, epi);
}

// The output projections end the same way: out = residual + W . s.vec, the
// residual this block's copy of the stream (s.residual: the layer's input for
// out_proj and o_proj, x_mid for the MLP's down product), so no global load
// waits in the epilogue.
template <class M>
__device__ __forceinline__ void project_and_add_residual(u64* out, unsigned tag, const Stage& st, Smem& s) {
    static_assert(M::ROWS == HIDDEN, "an output projection yields the residual stream's rows");
    const float* residual = s.residual;
    matvec<M>(st, s.ring, s.vec, [=](int row0, const float* sums, const auto&) {
        const int row = row0 + lane_id();
        const float y = sum_of_lane<M::R>(sums);
        if (lane_id() < M::R && row < HIDDEN) publish(out + row, residual[row] + y, tag);
    });
}

// ---- moving vectors into shared memory -------------------------------------
// Vectors written by other blocks reach shared memory with every load issued
// before the first store: one L2 round trip per vector instead of one per
// THREADS elements (a serial chain of up to 14 round trips at K = 3584).
template <int K>
struct VectorSlices {
    static_assert(K % 4 == 0, "vectors move as float4");
    static constexpr int N4 = K / 4;                                // float4s in the vector
    static constexpr int PER_THREAD = (N4 + THREADS - 1) / THREADS;
};

// Four bf16 (the embedding row) as floats.
__device__ __forceinline__ float4 load4(const bf16_t* p) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    return make_float4(bf16_lo(u.x), bf16_hi(u.x), bf16_lo(u.y), bf16_hi(u.y));
}
__device__ __forceinline__ float4 scale4(float4 v, float4 s, float k) {
    return make_float4(v.x * s.x * k, v.y * s.y * k, v.z * s.z * k, v.w * s.w * k);
}

// A vector of tagged words (common.cuh) that a stage waits for.
struct TaggedVector {
    const u64* words;
    unsigned tag;
    u64* report;   // Params::barrier: where a timed-out wait is reported
};

// The words at `words` as the layer tagged `tag` writes them.
__device__ __forceinline__ TaggedVector tagged_words(const Params& p, const u64* words, unsigned tag) {
    return {words, tag, p.barrier};
}

// This thread's float4s j = thread_id() + i * THREADS (those below N4) of a
// vector, every load issued before any is used.
template <int PER, class T>
__device__ __forceinline__ void fetch_slices(const T* x, int n4, float4 (&v)[PER]) {
#pragma unroll
    for (int i = 0; i < PER; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < n4) v[i] = load4(x + 4 * j);
    }
}
// ... of a tagged vector, once every word carries its tag (after the block's
// warps are through their work: settle_before_polling).
template <int PER>
__device__ __forceinline__ void fetch_slices(const TaggedVector& x, int n4, float4 (&v)[PER]) {
    settle_before_polling();
    u64 w[4 * PER];
#pragma unroll
    for (int i = 0; i < PER; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < n4) {
            load_tagged2(x.words + 4 * j, w[4 * i], w[4 * i + 1]);
            load_tagged2(x.words + 4 * j + 2, w[4 * i + 2], w[4 * i + 3]);
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) w[4 * i + e] = (u64)x.tag << 32;   // nothing to wait for
        }
    }
    await_tagged(w, x.tag, x.report, [&](int k) { return x.words + 4 * (thread_id() + k / 4 * THREADS) + k % 4; });
#pragma unroll
    for (int i = 0; i < PER; ++i)
        v[i] = make_float4(tagged_value(w[4 * i]), tagged_value(w[4 * i + 1]), tagged_value(w[4 * i + 2]),
                           tagged_value(w[4 * i + 3]));
}

// xs (permuted, see vec_slot) = x * rsqrt(mean(x^2) + eps) * scale: the
// zero-centred RMSNorm with scale = 1 + w folded in by the host. The scale is
// loaded with x, in the same round trip. If `raw` (shared memory) is set, x
// itself also goes there, in order.
template <int K, class Source>
__device__ __forceinline__ void load_rms_normed(const Source& x, const float* scale, float* xs, float* scratch,
                                                float* raw) {
    using V = VectorSlices<K>;
    float4 v[V::PER_THREAD], w[V::PER_THREAD];
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) w[i] = __ldg(reinterpret_cast<const float4*>(scale) + j);
    }
    fetch_slices(x, V::N4, v);
    float ss = 0.0f;
    stage_point(POINT_LOADED);
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i)
        if (thread_id() + i * THREADS < V::N4)
            ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    const float inv = rsqrtf(block_sum(ss, scratch) / K + RMS_EPS);
    stage_point(POINT_NORMED);
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) {
            *reinterpret_cast<float4*>(xs + vec_slot(4 * j)) = scale4(v[i], w[i], inv);
            if (raw != nullptr) reinterpret_cast<float4*>(raw)[j] = v[i];
        }
    }
    block_sync();
}

// Lane l's words l, l + 32, ... of a tagged vector of N words, once they carry their tag.
template <int N>
__device__ __forceinline__ void await_lanes(const TaggedVector& x, float (&v)[N / 32]) {
    constexpr int PER_LANE = N / 32;
    const u64* src = x.words + lane_id();
    u64 w[PER_LANE];
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) w[e] = load_tagged(src + 32 * e);
    await_tagged(w, x.tag, x.report, [=](int e) { return src + 32 * e; });
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) v[e] = tagged_value(w[e]);
}

// x (written by other blocks) -> shared memory (permuted), as it is (every
// warp is done with what xs held: fetch_slices settles the block first).
template <int K>
__device__ __forceinline__ void load_vector(const TaggedVector& x, float* xs) {
    using V = VectorSlices<K>;
    float4 v[V::PER_THREAD];
    fetch_slices(x, V::N4, v);
#pragma unroll
    for (int i = 0; i < V::PER_THREAD; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) *reinterpret_cast<float4*>(xs + vec_slot(4 * j)) = v[i];
    }
    block_sync();
}
