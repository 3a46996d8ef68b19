// SwiGLU MLP in two stages, handing over through tagged words like the mixer's:
//   up:   h = silu(gate . n) * (up . n), n = rmsnorm(x_mid): each block its rows
//         (gate and up rows interleaved, so one warp produces both halves of
//         h[i]), published as tagged words;
//   down: x = x_mid + W_down . h: each block waits for all of h and multiplies
//         its rows of W_down, adding x_mid's rows from its own copy (s.residual);
//         the next layer (or the final norm) waits for all of x.
// No grid barrier ends a layer: every block reads all of h before any block
// can write the next layer's x, and all of x before any block can write the
// next h, so each tagged buffer is rewritten only after every reader is done
// with it (docs/megakernel.md).
#pragma once
#include "matvec.cuh"

// (GateUp and Down, the matrices' shapes, are in staging.cuh.)

// s.vec holds rmsnorm(x_mid); the block's entries of h go to p.h.
__device__ __forceinline__ void mlp_up(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    constexpr int R = GateUp::R;
    u64* h = p.h;
    matvec<GateUp>(st, s.ring, s.vec, [=](int row0, const float* sums, const auto&) {
        if (lane_id() != 0) return;
#pragma unroll
        for (int r = 0; r < R; r += 2)
            if (row0 + r < 2 * INTERMEDIATE) publish(h + (row0 + r) / 2, silu(sums[r]) * sums[r + 1], tag);
    });
}

#ifndef DOWN_AS_H_ARRIVES
#define DOWN_AS_H_ARRIVES 0
#endif
#if DOWN_AS_H_ARRIVES
// The R row sums of a unit of W_down into rows row0.. of x: x_mid's (s.residual) plus the sums.
template <int R>
__device__ __forceinline__ void publish_down_rows(const Params& p, unsigned tag, int row0, const float* sums,
                                                  const Smem& s) {
    const int row = row0 + lane_id();
    const float y = sum_of_lane<R>(sums);
    if (lane_id() < R && row < HIDDEN) publish(p.x + row, s.residual[row] + y, tag);
}

// x = x_mid + W_down . h with each warp's first unit multiplied chunk by chunk
// (256 columns) while h arrives. The block's threads poll h as load_vector
// does; each 16-byte piece goes to s.vec once its four words carry the tag and
// is counted in s.chunks_in; between polls a warp multiplies the chunks whose
// 64 pieces are all in. So the product runs while the hand-off waits for its
// slowest writers, not after it (docs/perf-notes.md, twenty-fifth).
__device__ __forceinline__ void mlp_down_as_h_arrives(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    using M = Down;
    using V = VectorSlices<M::K>;
    constexpr int K = M::K, R = M::R, CHUNKS = K / 256, PER = V::PER_THREAD;
    constexpr unsigned ALL_CHUNKS = CHUNKS == 32 ? ~0u : (1u << CHUNKS) - 1;
    static_assert(CHUNKS <= 32, "a count per chunk");
    if (thread_id() < CHUNKS) s.chunks_in[thread_id()] = 0;
    settle_before_polling();   // every warp is through gate/up, which read s.vec
    const TaggedVector h = tagged_words(p, p.h, tag);
    const int warp = warp_id(), lane = lane_id();
    u64 w[4 * PER];
    unsigned pending = 0;   // this thread's pieces not yet in s.vec
#pragma unroll
    for (int i = 0; i < PER; ++i) {
        const int j = thread_id() + i * THREADS;
        if (j < V::N4) {
            load_tagged2(h.words + 4 * j, w[4 * i], w[4 * i + 1]);
            load_tagged2(h.words + 4 * j + 2, w[4 * i + 2], w[4 * i + 3]);
            pending |= 1u << i;
        }
    }
    PageCursor<M> pages(st, s.ring);
    const bf16_t* unit = nullptr;
    unsigned slot = 0, todo = 0;   // the chunks the warp has still to multiply (the same in every lane)
    if (warp < st.units) {
        slot = pages.acquire(s.ring, warp, unit);
        todo = ALL_CHUNKS;
    }
    const float4* xs = reinterpret_cast<const float4*>(s.vec);
    float sums[R] = {};
    for (unsigned polls = 0;; ++polls) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            if (!(pending >> i & 1u) || !has_tag(w[4 * i], tag) || !has_tag(w[4 * i + 1], tag)
                || !has_tag(w[4 * i + 2], tag) || !has_tag(w[4 * i + 3], tag)) continue;
            const int j = thread_id() + i * THREADS;
            *reinterpret_cast<float4*>(s.vec + vec_slot(4 * j)) =
                make_float4(tagged_value(w[4 * i]), tagged_value(w[4 * i + 1]), tagged_value(w[4 * i + 2]),
                            tagged_value(w[4 * i + 3]));
            count_up_shared(&s.chunks_in[j / 64]);
            pending &= ~(1u << i);
        }
        if (todo != 0) {
            // Lane c reads chunk c's count; the ballot makes the choice the warp's, and
            // the warp barrier orders lane c's acquire before every lane's reads of the chunk.
            const bool full = lane < CHUNKS && (todo >> lane & 1u) && load_count_shared(&s.chunks_in[lane]) == 64;
            const unsigned ready = __ballot_sync(0xffffffffu, full);
            __syncwarp();
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c)
                if (ready >> c & 1u)
#pragma unroll
                    for (int r = 0; r < R; ++r)
                        sums[r] += dot8(*reinterpret_cast<const uint4*>(unit + (size_t)r * K + c * 256 + lane * 8),
                                        xs[c * 64 + lane], xs[c * 64 + 32 + lane]);
            todo &= ~ready;
        }
        if (todo == 0 && __ballot_sync(0xffffffffu, pending != 0) == 0) break;
        between_polls(polls, h.report);
#pragma unroll
        for (int i = 0; i < PER; ++i)
            if (pending >> i & 1u)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!has_tag(w[4 * i + e], tag)) w[4 * i + e] = load_tagged(h.words + 4 * (thread_id() + i * THREADS) + e);
    }
    stage_point(POINT_AWAITED);
    if (warp < st.units) {
#pragma unroll
        for (int r = 0; r < R; ++r) sums[r] = warp_sum(sums[r]);
        release_slot(s.ring, slot, WARPS);
        publish_down_rows<R>(p, tag, (st.unit0 + warp) * R, sums, s);
    }
    // Further units (more than a warp's one): all of h is in s.vec once every
    // thread is through its loop.
    if (st.units > WARPS) {
        block_sync();
        const InputVector<K, false> x(s.vec);
#pragma unroll 1
        for (int j = warp + WARPS; j < st.units; j += WARPS) {
            float later_sums[R];
            const unsigned later = pages.acquire(s.ring, j, unit);
            unit_sums<K, R>(unit, x, later_sums);
            release_slot(s.ring, later, WARPS);
            publish_down_rows<R>(p, tag, (st.unit0 + j) * R, later_sums, s);
        }
    }
    stage_point(POINT_PRODUCT);
}
#endif

// x = x_mid + W_down . h for the block's rows of W_down.
__device__ __forceinline__ void mlp_down(const Params& p, unsigned tag, const Stage& st, Smem& s) {
#if DOWN_AS_H_ARRIVES
    mlp_down_as_h_arrives(p, tag, st, s);
#else
    load_vector<INTERMEDIATE>(tagged_words(p, p.h, tag), s.vec);
    stage_point(POINT_AWAITED);
    project_and_add_residual<Down>(p.x, tag, st, s);
#endif
}
