// Gated DeltaNet layer: three stages, each handing its outputs to the next as
// tagged words (common.cuh), no grid barrier between them.
//   project:    [qkv | z | b | a] = W_in . rmsnorm(x); causal conv + SiLU on q|k|v
//   recurrence: gated delta rule on the FP32 state, split over (value head, 32 columns);
//               waits for its head's q, k, v, a and b only
//   output:     gated RMSNorm w * norm(o) * silu(z), out_proj, residual add
#pragma once
#include "matvec.cuh"
#include "params.cuh"
#include "smem.cuh"

#define L2_NORM_EPS 1e-6f   // the eps of the reference l2_normalize

constexpr int DN_TILES = DN_VALUE_DIM / 32;                  // recurrence items per value head
constexpr int DN_ITEMS = DN_VALUE_HEADS * DN_TILES;

// The conv inputs of a projection row below CONV_DIM: its CONV_KERNEL taps, then
// the CONV_KERNEL - 1 previous inputs (the conv state).
struct ConvRows {
    static constexpr int N = 2 * CONV_KERNEL - 1;
    const float* conv_w;       // this layer's [CONV_DIM, CONV_KERNEL]
    float* conv_state;         // this layer's [CONV_DIM, CONV_KERNEL - 1]
    __device__ __forceinline__ void load(int row, float (&in)[N]) const {
        if (row >= CONV_DIM) return;
#pragma unroll
        for (int t = 0; t < CONV_KERNEL; ++t) in[t] = __ldg(conv_w + (size_t)row * CONV_KERNEL + t);
#pragma unroll
        for (int t = 0; t < CONV_KERNEL - 1; ++t) in[CONV_KERNEL + t] = load_shared_f32(conv_state + (size_t)row * (CONV_KERNEL - 1) + t);
    }
};

__device__ __forceinline__ ConvRows conv_rows(const Params& p, const LayerWeights& L, int slot) {
    return {L.conv_w, p.conv_state + (size_t)slot * CONV_DIM * (CONV_KERNEL - 1)};
}

// Stage 1. s.vec holds the normed layer input; `st` is the block's share
// of W_in and `conv_in` its first batch of conv inputs (fetched before the input).
__device__ __forceinline__ void deltanet_project(const Params& p, const LayerWeights& L, int slot, unsigned tag,
                                                 const Stage& st, RowInputs<ConvRows::N> conv_in, Smem& s) {
    using M = DeltaNetInProj;
    constexpr int R = M::R;
    const ConvRows conv = conv_rows(p, L, slot);
    matvec<M>(st, s.ring, s.vec, conv, conv_in, [=](int row0, const float* sums, const RowInputs<ConvRows::N>& in) {
        const int row = row0 + lane_id();
        float y = sum_of_lane<R>(sums);
        if (lane_id() >= R || row >= DN_PROJ_ROWS) return;
        if (row < CONV_DIM) {   // depthwise causal conv over (state..., y), then SiLU
            float* past = conv.conv_state + (size_t)row * (CONV_KERNEL - 1);
            float acc = in.v[CONV_KERNEL - 1] * y;
#pragma unroll
            for (int t = 0; t < CONV_KERNEL - 1; ++t) acc = fmaf(in.v[t], in.v[CONV_KERNEL + t], acc);
#pragma unroll
            for (int t = 0; t < CONV_KERNEL - 2; ++t) past[t] = in.v[CONV_KERNEL + t + 1];
            past[CONV_KERNEL - 2] = y;
            y = silu(acc);
        }
        publish(p.proj + row, y, tag);
    });
}

__device__ __forceinline__ float* deltanet_state_tile(const Params& p, int slot, int item) {
    const int h = item / DN_TILES, j0 = (item % DN_TILES) * 32;
    return p.dn_state + ((size_t)(slot * DN_VALUE_HEADS + h) * DN_KEY_DIM) * DN_VALUE_DIM + j0;
}

// Copy the state tile of this block's first recurrence item into s.dn_tile
// (cp.async; the recurrence waits for it). Issued before the block waits for
// the layer's input, so the copy overlaps that wait (+0.7% tg128, v35 in
// docs/perf-notes.md): the tile's last reader, the previous DeltaNet layer's
// recurrence, is long done.
__device__ __forceinline__ void stage_state_tile(const Params& p, int slot, Smem& s) {
    if (blockIdx.x >= DN_ITEMS) return;
    const float* S = deltanet_state_tile(p, slot, blockIdx.x);
    constexpr int PIECES = 32 * sizeof(float) / 16;   // 16-byte pieces per tile row
    for (int i = thread_id(); i < DN_KEY_DIM * PIECES; i += THREADS)
        copy_async16(&s.dn_tile[i / PIECES][(i % PIECES) * 4], S + (size_t)(i / PIECES) * DN_VALUE_DIM + (i % PIECES) * 4);
}

// L2-normalise one key-dim vector (a warp's job) into shared memory, times `scale`.
__device__ __forceinline__ void l2_normalize_warp(const TaggedVector& src, float* dst, float scale) {
    constexpr int PER_LANE = DN_KEY_DIM / 32;
    const int lane = lane_id();
    float v[PER_LANE], ss = 0.0f;
    await_lanes<DN_KEY_DIM>(src, v);
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) ss += v[e] * v[e];
    const float inv = rsqrtf(warp_sum(ss) + L2_NORM_EPS) * scale;
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) dst[lane + 32 * e] = v[e] * inv;
}

// Stage 2. Per value head h and 32 value columns j, with decay = exp(g):
//   S' = decay S + k delta^T,  delta = beta (v - decay S^T k),
//   o  = S'^T q = decay S^T q + delta (k . q)
// so S is read once and written once. Lane = column, warps split the key rows.
// The block's first item reads its tile from s.dn_tile (staged during stage 1).
__device__ __forceinline__ void deltanet_recurrence(const Params& p, const LayerWeights& L, int slot, unsigned tag,
                                                    Smem& s) {
    constexpr int ROWS = DN_KEY_DIM / WARPS;
    const int lane = lane_id(), warp = warp_id();
    async_wait_all();   // made visible to the block by the __syncthreads below
    settle_before_polling();
    for (int item = blockIdx.x; item < DN_ITEMS; item += gridDim.x) {
        const int h = item / DN_TILES, j = (item % DN_TILES) * 32 + lane, kh = h / DN_V_PER_K;
        // This column's v and the head's b and a (tagged, waited for after q and k)
        // and decay parameters: loaded now, in flight while q and k are normalised.
        const u64* ab = p.proj + CONV_DIM + VALUE_DIM;
        const u64* at[3] = {ab + h, ab + DN_VALUE_HEADS + h, p.proj + 2 * KEY_DIM + h * DN_VALUE_DIM + j};
        u64 w[3] = {load_tagged(at[0]), load_tagged(at[1]), load_tagged(at[2])};
        const float a_log = __ldg(L.a_log + h), dt_bias = __ldg(L.dt_bias + h);
        if (warp == 0)
            l2_normalize_warp(tagged_words(p, p.proj + kh * DN_KEY_DIM, tag), s.dn_q, rsqrtf((float)DN_KEY_DIM));
        if (warp == 1) l2_normalize_warp(tagged_words(p, p.proj + KEY_DIM + kh * DN_KEY_DIM, tag), s.dn_k, 1.0f);
        await_tagged(w, tag, p.barrier, [&](int i) { return at[i]; });
        stage_point(POINT_AWAITED);
        block_sync();
        const float b = tagged_value(w[0]), a = tagged_value(w[1]), v = tagged_value(w[2]);
        const float decay = expf(-expf(a_log) * softplus(a + dt_bias)), beta = sigmoid(b);

        float* S = deltanet_state_tile(p, slot, item) + lane;
        const bool staged = item == (int)blockIdx.x;
        float sv[ROWS], sk = 0.0f, sq = 0.0f;
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const int i = warp + r * WARPS;
            sv[r] = staged ? s.dn_tile[i][lane] : S[(size_t)i * DN_VALUE_DIM];
        }
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            sk = fmaf(sv[r], s.dn_k[warp + r * WARPS], sk);
            sq = fmaf(sv[r], s.dn_q[warp + r * WARPS], sq);
        }
        s.dn_partial[0][warp][lane] = sk;
        s.dn_partial[1][warp][lane] = sq;
        float kq = 0.0f;
        for (int i = lane; i < DN_KEY_DIM; i += 32) kq = fmaf(s.dn_k[i], s.dn_q[i], kq);
        kq = warp_sum(kq);
        block_sync();
        float stk = 0.0f, stq = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) {
            stk += s.dn_partial[0][w][lane];
            stq += s.dn_partial[1][w][lane];
        }
        const float delta = beta * (v - decay * stk);
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
            S[(size_t)(warp + r * WARPS) * DN_VALUE_DIM] = fmaf(decay, sv[r], s.dn_k[warp + r * WARPS] * delta);
        if (warp == 0) publish(p.mixer_out + h * DN_VALUE_DIM + j, fmaf(decay, stq, delta * kq), tag);
        block_sync();   // s.dn_* are reused by the next item
        stage_point(POINT_PUBLISHED);
    }
}

// Stage 3, input: the gated norm of the recurrence output into s.vec. A warp
// normalises heads warp, warp + WARPS, ...: with the register hand-off, o and z
// of two of them are loaded in one round trip rather than one a head (without
// it, two heads' loads make the kernel spill).
constexpr int GATED_NORM_HEADS = DN_VALUE_HEADS % (2 * WARPS) == 0 && REGISTER_HANDOFF ? 2 : 1;
__device__ __forceinline__ void deltanet_gated_norm(const Params& p, const LayerWeights& L, unsigned tag, Smem& s) {
    constexpr int PER_LANE = DN_VALUE_DIM / 32, GROUP = GATED_NORM_HEADS;
    // No settle_before_polling: the recurrence ends at a block barrier (its last
    // item's, or its own settling where the block has no item).
    const int lane = lane_id(), warp = warp_id();
    for (int h0 = warp; h0 < DN_VALUE_HEADS; h0 += GROUP * WARPS) {
        // o and z of the group's heads (tagged) and the norm weight in one round trip
        auto at = [=](int i) {   // i < GROUP * PER_LANE: o; then z
            const int k = i % (GROUP * PER_LANE) / PER_LANE, e = i % PER_LANE;
            const int col = (h0 + k * WARPS) * DN_VALUE_DIM + lane + 32 * e;
            return i < GROUP * PER_LANE ? p.mixer_out + col : p.proj + CONV_DIM + col;
        };
        u64 oz[2 * GROUP * PER_LANE];
#pragma unroll
        for (int i = 0; i < 2 * GROUP * PER_LANE; ++i) oz[i] = load_tagged(at(i));
        float o[GROUP][PER_LANE], z[GROUP][PER_LANE], w[PER_LANE];
#pragma unroll
        for (int e = 0; e < PER_LANE; ++e) w[e] = __ldg(L.out_norm + lane + 32 * e);
        await_tagged(oz, tag, p.barrier, at);
#pragma unroll
        for (int k = 0; k < GROUP; ++k)
#pragma unroll
            for (int e = 0; e < PER_LANE; ++e) {
                o[k][e] = tagged_value(oz[k * PER_LANE + e]);
                z[k][e] = tagged_value(oz[GROUP * PER_LANE + k * PER_LANE + e]);
            }
#pragma unroll
        for (int k = 0; k < GROUP; ++k) {
            float ss = 0.0f;
#pragma unroll
            for (int e = 0; e < PER_LANE; ++e) ss += o[k][e] * o[k][e];
            const float inv = rsqrtf(warp_sum(ss) / DN_VALUE_DIM + RMS_EPS);
#pragma unroll
            for (int e = 0; e < PER_LANE; ++e)
                s.vec[vec_slot((h0 + k * WARPS) * DN_VALUE_DIM + lane + 32 * e)] = w[e] * o[k][e] * inv * silu(z[k][e]);
        }
    }
    block_sync();
    stage_point(POINT_AWAITED);
}
