// Gated full-attention layer: four stages, each handing its outputs to the
// next as tagged words (common.cuh), no grid barrier between them.
//   project:  [(q, gate) per head | k | v] = W_in . rmsnorm(x)
//   partials: flash-decoding: the cached positions of each kv head are cut into
//             as many chunks as there are blocks per kv head; each block runs an
//             online softmax over its chunk for all query heads of the kv head
//   combine:  merge the chunks' (max, sum, numerator), times sigmoid(gate)
//   output:   o_proj, residual add (project_and_add_residual; the order is in megakernel.cu)
#pragma once
#include "deltanet.cuh"

// Below this a chunk costs more in merging than it saves. 16 since the combine
// takes every output in one round (v37): +0.9% tg128 over 32 on the H100, 8 the
// same as 16, 24 +0.4% (v38 in docs/perf-notes.md); long contexts use all the
// blocks either way.
#ifndef MIN_POSITIONS_PER_CHUNK
#define MIN_POSITIONS_PER_CHUNK 16
#endif
#ifndef POSITIONS_IN_FLIGHT
#define POSITIONS_IN_FLIGHT (REGISTER_HANDOFF ? 2 : 1)   // cached positions a warp loads before
                                     // using any: the partials at 32k are latency-bound (v8: +5%
                                     // at 2; without the register hand-off one fits 168 registers)
#endif

static_assert(QUERIES_PER_KV + 2 <= WARPS, "one warp per query head plus two for k and v");
constexpr int DIMS_PER_LANE = HEAD_DIM / 32;           // 8 per 16-byte load
constexpr int LOADS_PER_LANE = HEAD_DIM / 256;
constexpr int PARTIAL_STRIDE = HEAD_DIM + 2;           // (max, sum, numerator[HEAD_DIM])

__device__ __forceinline__ void attention_project(const Params& p, unsigned tag, const Stage& st, Smem& s) {
    using M = AttentionInProj;
    matvec<M>(st, s.ring, s.vec, [=](int row0, const float* sums, const auto&) {
        const int row = row0 + lane_id();
        const float y = sum_of_lane<M::R>(sums);
        if (lane_id() < M::R && row < M::ROWS) publish(p.proj + row, y, tag);
    });
}

struct Split {
    int chunks, chunk_len;
};

// The same split in the partials and combine stages: at most gridDim.x / N_KV_HEADS
// chunks (one block each) of at least MIN_POSITIONS_PER_CHUNK positions.
__device__ __forceinline__ Split attention_split(int n_pos) {
    int chunks = min((int)gridDim.x / N_KV_HEADS,
                     (n_pos + MIN_POSITIONS_PER_CHUNK - 1) / MIN_POSITIONS_PER_CHUNK);
    chunks = max(chunks, 1);
    const int len = (n_pos + chunks - 1) / chunks;
    return {(n_pos + len - 1) / len, len};
}

// A warp's zero-centred RMSNorm (scale = 1 + w) and rotate-half RoPE of one head
// vector `raw` (tagged, global) -> `out` (shared, float), times `post_scale`.
__device__ __forceinline__ void norm_rope_warp(const TaggedVector& raw, const float* scale, int pos,
                                               float post_scale, float* out) {
    constexpr int PER_LANE = HEAD_DIM / 32;
    const int lane = lane_id();
    float v[PER_LANE], w[PER_LANE], ss = 0.0f;
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) w[e] = __ldg(scale + lane + 32 * e);
    await_lanes<HEAD_DIM>(raw, v);
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) ss += v[e] * v[e];
    const float inv = rsqrtf(warp_sum(ss) / HEAD_DIM + RMS_EPS);
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) out[lane + 32 * e] = v[e] * inv * w[e];
    __syncwarp();
    constexpr int HALF = ROTARY_DIM / 2;
    for (int d = lane; d < HALF; d += 32) {
        // The angle is rounded to float as the reference computes it, then reduced
        // to [-pi, pi] in double so the fast sine/cosine are accurate.
        const double angle = (double)((float)pos * ROPE_INV_FREQ[d]);
        const float reduced = (float)(angle - 6.283185307179586 * rint(angle * 0.15915494309189535));
        const float c = __cosf(reduced), sn = __sinf(reduced);
        const float x1 = out[d], x2 = out[d + HALF];
        out[d] = x1 * c - x2 * sn;
        out[d + HALF] = x2 * c + x1 * sn;
    }
    __syncwarp();
    for (int d = lane; d < HEAD_DIM; d += 32) out[d] *= post_scale;
}

// This position's queries of kv head kvh's query heads (a warp each, normed,
// rotated and pre-scaled into s.att_q), its key and value (the next two warps,
// into s.att_k and s.att_v as the cache holds them); then a block barrier.
__device__ __forceinline__ void stage_current_position(const Params& p, const LayerWeights& L, int kvh, int pos,
                                                       unsigned tag, int lane, int warp, Smem& s) {
    if (warp < QUERIES_PER_KV) {
        const int hq = kvh * QUERIES_PER_KV + warp;
        norm_rope_warp(tagged_words(p, p.proj + hq * 2 * HEAD_DIM, tag), L.q_norm, pos, rsqrtf((float)HEAD_DIM),
                       s.att_q[warp]);
    } else if (warp == QUERIES_PER_KV) {
        float* k = &s.att_acc[0][0];   // staging; att_acc is cleared after the barrier
        norm_rope_warp(tagged_words(p, p.proj + 2 * Q_SIZE + kvh * HEAD_DIM, tag), L.k_norm, pos, 1.0f, k);
        __syncwarp();
        for (int d = lane; d < HEAD_DIM; d += 32) s.att_k[d] = float_to_bf16(k[d]);
    } else if (warp == QUERIES_PER_KV + 1) {
        float v[HEAD_DIM / 32];
        await_lanes<HEAD_DIM>(tagged_words(p, p.proj + 2 * Q_SIZE + KV_SIZE + kvh * HEAD_DIM, tag), v);
#pragma unroll
        for (int e = 0; e < HEAD_DIM / 32; ++e) s.att_v[lane + 32 * e] = float_to_bf16(v[e]);
    }
    stage_point(POINT_AWAITED);
    block_sync();
}

// This position's key and value (staged by stage_current_position) into the
// cache of the kv head whose positions start at head_base.
__device__ __forceinline__ void append_to_cache(const Params& p, size_t head_base, int pos, const Smem& s) {
    for (int d = thread_id(); d < HEAD_DIM; d += THREADS) {
        p.k_cache[head_base + (size_t)pos * HEAD_DIM + d] = s.att_k[d];
        p.v_cache[head_base + (size_t)pos * HEAD_DIM + d] = s.att_v[d];
    }
}

// Lane `lane`'s 16-byte pieces of position t's key and value: cached positions
// from the cache, this position from shared memory, later ones left as they are.
__device__ __forceinline__ void load_position(const bf16_t* kc, const bf16_t* vc, int t, int pos, int lane,
                                              const Smem& s, uint4 (&k)[LOADS_PER_LANE], uint4 (&v)[LOADS_PER_LANE]) {
#pragma unroll
    for (int c = 0; c < LOADS_PER_LANE; ++c) {
        const int off = c * 256 + lane * 8;
        if (t < pos) {
            k[c] = load_shared16(kc + (size_t)t * HEAD_DIM + off);
            v[c] = load_shared16(vc + (size_t)t * HEAD_DIM + off);
        } else if (t == pos) {
            k[c] = *reinterpret_cast<const uint4*>(s.att_k + off);
            v[c] = *reinterpret_cast<const uint4*>(s.att_v + off);
        }
    }
}

__device__ __forceinline__ void attention_partials(const Params& p, const LayerWeights& L, int slot,
                                                   int pos, unsigned tag, Smem& s) {
    const int lane = lane_id(), warp = warp_id();
    const int n_pos = pos + 1;
    const Split split = attention_split(n_pos);
    settle_before_polling();
    for (int item = blockIdx.x; item < N_KV_HEADS * split.chunks; item += gridDim.x) {
        const int kvh = item / split.chunks, chunk = item % split.chunks;
        const int t0 = chunk * split.chunk_len, t1 = min(t0 + split.chunk_len, n_pos);

        stage_current_position(p, L, kvh, pos, tag, lane, warp, s);
        for (int i = thread_id(); i < QUERIES_PER_KV * HEAD_DIM; i += THREADS) (&s.att_acc[0][0])[i] = 0.0f;

        const size_t head_base = ((size_t)slot * N_KV_HEADS + kvh) * p.max_seq * HEAD_DIM;
        if (t1 == n_pos) append_to_cache(p, head_base, pos, s);   // the chunk holding this position

        // Per lane: dims c * 256 + lane * 8 + [0, 8) of every query head of this kv head.
        float m[QUERIES_PER_KV], l[QUERIES_PER_KV], acc[QUERIES_PER_KV][DIMS_PER_LANE];
#pragma unroll
        for (int h = 0; h < QUERIES_PER_KV; ++h) {
            m[h] = NEG_INF;
            l[h] = 0.0f;
#pragma unroll
            for (int e = 0; e < DIMS_PER_LANE; ++e) acc[h][e] = 0.0f;
        }
        const bf16_t* kc = p.k_cache + head_base;
        const bf16_t* vc = p.v_cache + head_base;
        for (int tb = t0 + warp; tb < t1; tb += WARPS * POSITIONS_IN_FLIGHT) {
            uint4 kr[POSITIONS_IN_FLIGHT][LOADS_PER_LANE], vr[POSITIONS_IN_FLIGHT][LOADS_PER_LANE];
#pragma unroll
            for (int u = 0; u < POSITIONS_IN_FLIGHT; ++u) load_position(kc, vc, tb + u * WARPS, pos, lane, s, kr[u], vr[u]);
#pragma unroll
            for (int u = 0; u < POSITIONS_IN_FLIGHT; ++u) {
                if (tb + u * WARPS >= t1) break;
                float vf[DIMS_PER_LANE];
#pragma unroll
                for (int c = 0; c < LOADS_PER_LANE; ++c) unpack8(vr[u][c], vf + c * 8);
#pragma unroll
                for (int h = 0; h < QUERIES_PER_KV; ++h) {
                    float score = 0.0f;
#pragma unroll
                    for (int c = 0; c < LOADS_PER_LANE; ++c) score += dot8(kr[u][c], &s.att_q[h][c * 256 + lane * 8]);
                    score = warp_sum(score);
                    const float m_new = fmaxf(m[h], score);
                    const float correction = expf(m[h] - m_new), weight = expf(score - m_new);
                    l[h] = l[h] * correction + weight;
#pragma unroll
                    for (int e = 0; e < DIMS_PER_LANE; ++e) acc[h][e] = fmaf(acc[h][e], correction, weight * vf[e]);
                    m[h] = m_new;
                }
            }
        }

        // Merge the warps: the block's maximum and sum per query head first (few
        // live registers beside acc), then each warp's numerators rescaled to it
        // and added in shared memory.
        if (lane == 0)
#pragma unroll
            for (int h = 0; h < QUERIES_PER_KV; ++h) {
                s.att_max[warp][h] = m[h];
                s.att_sum[warp][h] = l[h];
            }
        block_sync();
        u64* record = p.attn_partial + (size_t)item * QUERIES_PER_KV * PARTIAL_STRIDE;
        if (thread_id() < QUERIES_PER_KV) {
            const int h = thread_id();
            float block_max = NEG_INF, block_sum = 0.0f;
            for (int w = 0; w < WARPS; ++w) block_max = fmaxf(block_max, s.att_max[w][h]);
            for (int w = 0; w < WARPS; ++w)
                if (s.att_max[w][h] != NEG_INF) block_sum += s.att_sum[w][h] * expf(s.att_max[w][h] - block_max);
            s.att_block_max[h] = block_max;
            publish(record + h * PARTIAL_STRIDE, block_max, tag);
            publish(record + h * PARTIAL_STRIDE + 1, block_sum, tag);
        }
        block_sync();
        // One warp at a time, no atomics: float atomics on shared memory are
        // compare-and-swap loops, and eight warps adding into the same
        // numerators cost ~14 us a layer (stage clock, v8).
        for (int w = 0; w < WARPS; ++w) {
            if (warp == w)
#pragma unroll
                for (int h = 0; h < QUERIES_PER_KV; ++h) {
                    if (m[h] == NEG_INF) continue;   // this warp saw no position
                    const float scale = expf(m[h] - s.att_block_max[h]);
#pragma unroll
                    for (int c = 0; c < LOADS_PER_LANE; ++c)
#pragma unroll
                        for (int e = 0; e < 8; ++e) s.att_acc[h][c * 256 + lane * 8 + e] += acc[h][c * 8 + e] * scale;
                }
            block_sync();
        }
        for (int i = thread_id(); i < QUERIES_PER_KV * HEAD_DIM; i += THREADS)
            publish(record + (i / HEAD_DIM) * PARTIAL_STRIDE + 2 + i % HEAD_DIM, (&s.att_acc[0][0])[i], tag);
        block_sync();
        stage_point(POINT_PUBLISHED);
    }
}

// A half-warp per output element (query head, dim); its lanes split the chunks.
// Half-warps rather than warps: Q_SIZE outputs over the grid's warps would take
// two rounds one after another (2,048 over 1,056 warps on the H100), each a
// round trip to the partials and the gate.
constexpr int COMBINE_LANES = 16;
static_assert(Q_SIZE % (32 / COMBINE_LANES) == 0, "a warp's half-warps finish their outputs together");
__device__ __forceinline__ void attention_combine(const Params& p, int pos, unsigned tag) {
    constexpr int PER_WARP = 32 / COMBINE_LANES;
    const int lane = lane_id() % COMBINE_LANES;
    const Split split = attention_split(pos + 1);
    // No settle_before_polling: the partials end at a block barrier (their last
    // item's, or their own settling where the block has no item).
    for (int o = grid_warp() * PER_WARP + lane_id() / COMBINE_LANES; o < Q_SIZE; o += grid_warps() * PER_WARP) {
        const int hq = o / HEAD_DIM, d = o % HEAD_DIM;
        const int kvh = hq / QUERIES_PER_KV, h = hq % QUERIES_PER_KV;
        const u64* base = p.attn_partial + ((size_t)kvh * split.chunks * QUERIES_PER_KV + h) * PARTIAL_STRIDE;
        const u64* gate_at = p.proj + hq * 2 * HEAD_DIM + HEAD_DIM + d;
        u64 gate[1] = {load_tagged(gate_at)};   // in flight meanwhile
        float num = 0.0f, den = 0.0f, mx = NEG_INF;
        // A lane's chunk's (max, sum, numerator) in one round trip, merged online.
        for (int c = lane; c < split.chunks; c += COMBINE_LANES) {
            const u64* rec = base + (size_t)c * QUERIES_PER_KV * PARTIAL_STRIDE;
            const u64* at[3] = {rec, rec + 1, rec + 2 + d};
            u64 w[3] = {load_tagged(at[0]), load_tagged(at[1]), load_tagged(at[2])};
            await_tagged(w, tag, p.barrier, [&](int i) { return at[i]; });
            // A larger maximum rescales what the lane has summed so far.
            const float m = tagged_value(w[0]), m_new = fmaxf(mx, m);
            const float keep = mx == NEG_INF ? 0.0f : expf(mx - m_new), weight = expf(m - m_new);
            den = den * keep + tagged_value(w[1]) * weight;
            num = num * keep + tagged_value(w[2]) * weight;
            mx = m_new;
        }
        const float m_all = warp_max<COMBINE_LANES>(mx), scale = mx == NEG_INF ? 0.0f : expf(mx - m_all);
        num = warp_sum<COMBINE_LANES>(num * scale);
        den = warp_sum<COMBINE_LANES>(den * scale);
        await_tagged(gate, tag, p.barrier, [=](int) { return gate_at; });
        if (lane == 0) publish(p.mixer_out + o, num / den * sigmoid(tagged_value(gate[0])), tag);
        stage_point(POINT_PUBLISHED);
    }
}
