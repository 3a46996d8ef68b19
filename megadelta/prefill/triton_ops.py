"""The prefill's fused stages as Triton kernels (the GPU path).

Each public function has the signature and meaning of its namesake in
``torch_ops``; the GPU tests compare the two on random inputs.

The gated delta rule runs in four kernels over chunks of C tokens; only the
third is sequential, and it does no more than the recurrence needs:

1. ``_deltanet_conv_kernel``, one program per (R token rows, q/k/v head), all
   in parallel: causal conv + SiLU from the projection (the first K-1 rows
   also from the conv state, which the same programs then advance), L2 norm
   of q and k. Stores q, K^T and V chunk-major.
2. ``_deltanet_wy_kernel``, one program per (chunk, value head), all in
   parallel: beta, g and the in-chunk cumulative decay gamma, then the WY form
   T = (I + A)^-1 with A[t,s] = beta_t e^(gamma_t-gamma_s) k_t.k_s (s < t),
   W = T diag(beta e^gamma) K, U = T diag(beta) V. The inverse: the 16x16
   diagonal blocks by a float32 Neumann series in product form (batched
   products), then the block-triangular remainder by a short tf32 series
   (nilpotent of degree C/16).
3. ``_deltanet_state_kernel``, one program per (value head, block of value
   columns): carries the float32 state S across the chunks in registers,
   V' = U - W S, S <- e^gamma_C S + K^T diag(e^(gamma_C-gamma)) V', and stores
   S at each chunk's start and V'. Its loads are software-pipelined, so the
   next chunk's W and K arrive while this chunk's products run.
4. ``_deltanet_output_kernel``, one program per (chunk, value head, block of
   value columns), all in parallel: O = (Q e^gamma) S + P V' with the masked
   decayed scores P = (Q K^T) * e^(gamma_t-gamma_s) (s <= t).

Everything the state depends on stays float32 (tf32 products). Launch shapes
(chunk size, rows and column blocks, warps, pipeline depth) are in
``DeltaNetTuning``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..config import ModelConfig
from .weights import DeltaNetWeights

SUB_BLOCK = 16        # diagonal block of the chunk's triangular system, inverted by a float32 series
# tf32 tensor-core products: ~1e-3 relative error per product, well inside the
# bf16 noise of the projections around them.
DOT_PRECISION = "tf32"
# Every launch asks for fused multiply-adds, as Triton has compiled these
# kernels so far by default: Triton 3.9 warns that the default becomes off in
# 3.10, and the kernels were tuned and checked against the references with it on.
FP_FUSION = dict(enable_fp_fusion=True)


# ---- norms and activations ------------------------------------------------

@triton.jit
def _add_rmsnorm_kernel(x_ptr, delta_ptr, w_ptr, out_ptr, n_cols, eps,
                        HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
    if HAS_DELTA:
        x += tl.load(delta_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(x_ptr + row * n_cols + cols, x, mask=mask)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * n_cols + cols, (x * rstd * (1.0 + w)).to(out_ptr.dtype.element_ty), mask=mask)


def add_rmsnorm(x: Tensor, delta: Tensor | None, weight: Tensor, eps: float,
                out_dtype: torch.dtype) -> Tensor:
    rows, cols = x.shape
    _check_contiguous(x=x, delta=delta)
    out = torch.empty(rows, cols, dtype=out_dtype, device=x.device)
    _add_rmsnorm_kernel[(rows,)](x, x if delta is None else delta, weight, out, cols, eps,
                                 HAS_DELTA=delta is not None, BLOCK=triton.next_power_of_2(cols),
                                 num_warps=4, **FP_FUSION)
    return out


@triton.jit
def _silu_mul_kernel(gate_up_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    gate = tl.load(gate_up_ptr + row * 2 * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(gate_up_ptr + row * 2 * n_cols + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * n_cols + cols, (gate * tl.sigmoid(gate) * up).to(out_ptr.dtype.element_ty),
             mask=mask)


def silu_mul(gate_up: Tensor) -> Tensor:
    _check_contiguous(gate_up=gate_up)
    rows, n_cols = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(rows, n_cols, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_mul_kernel[(rows, triton.cdiv(n_cols, block))](gate_up, out, n_cols, BLOCK=block, num_warps=4, **FP_FUSION)
    return out


@triton.jit
def _gated_rmsnorm_kernel(o_ptr, z_ptr, z_row_stride, w_ptr, out_ptr, eps,
                          HEADS: tl.constexpr, HEADS_BLOCK: tl.constexpr, D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    h = tl.arange(0, HEADS_BLOCK)[:, None]
    d = tl.arange(0, D)[None, :]
    mask = h < HEADS
    o = tl.load(o_ptr + row * HEADS * D + h * D + d, mask=mask, other=0.0)
    z = tl.load(z_ptr + row * z_row_stride + h * D + d, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(o * o, axis=1) / D + eps)
    out = o * rstd[:, None] * tl.load(w_ptr + d) * (z * tl.sigmoid(z))
    tl.store(out_ptr + row * HEADS * D + h * D + d, out.to(out_ptr.dtype.element_ty), mask=mask)


def gated_rmsnorm(o: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> Tensor:
    seq_len, heads, d = o.shape
    _check_power_of_two(value_head_dim=d)
    _check_contiguous(o=o)
    assert z.stride(1) == 1, "z must have contiguous rows"
    out = torch.empty(seq_len, heads * d, dtype=out_dtype, device=o.device)
    _gated_rmsnorm_kernel[(seq_len,)](o, z, z.stride(0), weight, out, eps, HEADS=heads,
                                      HEADS_BLOCK=triton.next_power_of_2(heads), D=d, num_warps=4, **FP_FUSION)
    return out


@triton.jit
def _qk_norm_rope_kernel(x_ptr, x_token_stride, x_head_stride, w_ptr, cos_ptr, sin_ptr,
                         out_ptr, out_head_stride, out_token_stride, eps,
                         D: tl.constexpr, HALF: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    d = tl.arange(0, D)
    src = x_ptr + t * x_token_stride + h * x_head_stride
    x = tl.load(src + d).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / D + eps)
    normed = x * rstd * (1.0 + tl.load(w_ptr + d))
    # rotate-half: dim d < HALF pairs with d + HALF (and back); dims >= 2*HALF pass through
    partner = tl.where(d < HALF, d + HALF, tl.where(d < 2 * HALF, d - HALF, d))
    partner_normed = tl.load(src + partner).to(tl.float32) * rstd * (1.0 + tl.load(w_ptr + partner))
    rotated = d < 2 * HALF
    freq = tl.where(d < HALF, d, d - HALF)
    cos = tl.load(cos_ptr + t * HALF + freq, mask=rotated, other=1.0)
    sin = tl.load(sin_ptr + t * HALF + freq, mask=rotated, other=0.0)
    sign = tl.where(d < HALF, -1.0, 1.0)
    out = normed * cos + sign * partner_normed * sin
    tl.store(out_ptr + h * out_head_stride + t * out_token_stride + d, out.to(out_ptr.dtype.element_ty))


def qk_norm_rope(x: Tensor, weight: Tensor, eps: float, cos: Tensor, sin: Tensor, out: Tensor) -> None:
    seq_len, heads, d = x.shape
    _check_power_of_two(head_dim=d)
    assert x.stride(2) == 1 and out.stride(2) == 1, "head dims must be contiguous"
    _check_contiguous(cos=cos, sin=sin)
    _qk_norm_rope_kernel[(seq_len, heads)](x, x.stride(0), x.stride(1), weight, cos, sin,
                                           out, out.stride(0), out.stride(1), eps,
                                           D=d, HALF=cos.shape[1], num_warps=4, **FP_FUSION)


# ---- the gated delta rule -------------------------------------------------

@dataclass(frozen=True)
class DeltaNetTuning:
    """Launch shape of the delta-rule kernels (``deltanet`` takes ``tuning_for`` the length);
    ``python -m megadelta.prefill.tune_deltanet`` times candidates against each other.
    Every size is a power of two, at least 16."""
    chunk: int = 64               # tokens per chunk
    conv_rows: int = 16           # token rows per conv program (at most ``chunk``)
    conv_warps: int = 4
    wy_block: int = 32            # columns of W and U per product in the WY kernel: fewer live registers
    wy_warps: int = 4
    state_block_v: int = 16       # value columns per state-pass program: more programs, but each
                                  # reads the chunk's whole W and K
    state_warps: int = 4
    state_stages: int = 3         # software-pipeline depth of the state pass: at 3 the next chunk's
                                  # loads are in flight during this chunk's products (at 2 Triton 3.6
                                  # issues them only after the products; 1: no prefetch)
    output_block_v: int = 64      # value columns per output program
    output_warps: int = 4

    def __post_init__(self):
        for name in ("chunk", "conv_rows", "wy_block", "state_block_v", "output_block_v"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"DeltaNetTuning.{name} must be a power of two >= 16, got {size}")
        if self.conv_rows > self.chunk:
            raise ValueError(f"DeltaNetTuning.conv_rows ({self.conv_rows}) must not exceed chunk ({self.chunk})")
        for name in ("conv_warps", "wy_warps", "state_warps", "output_warps"):
            warps = getattr(self, name)
            if warps < 1 or warps > 32 or warps & (warps - 1):
                raise ValueError(f"DeltaNetTuning.{name} must be a power of two in [1, 32], got {warps}")
        if self.state_stages < 1:
            raise ValueError(f"DeltaNetTuning.state_stages must be >= 1, got {self.state_stages}")


# Launch shapes by prompt length, from tune_deltanet on an H100: chunks of 32
# below SHORT_PROMPT tokens (T=520: 66.7 against 71.9 us a layer; twice the
# programs in the parallel kernels), of 64 from there (T=2048: 194 against 209
# us; the state pass has half the chunks to walk). Only these two lengths were
# measured; the boundary sits between them.
SHORT_PROMPT = 1024
TUNING = DeltaNetTuning()
SHORT_TUNING = replace(TUNING, chunk=32)


def tuning_for(seq_len: int) -> DeltaNetTuning:
    return SHORT_TUNING if seq_len < SHORT_PROMPT else TUNING


@triton.jit
def _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len, channels, first_rows,
               R: tl.constexpr, D: tl.constexpr, KW: tl.constexpr, KW_TAIL: tl.constexpr):
    """silu(causal depthwise conv) at token rows [R] for channels [D]; inputs
    before the prompt come from the conv state (the last KW-1 inputs). Rows
    past the prompt are 0. ``first_rows``: ``rows`` starts at token 0; that
    program alone reads these channels' conv state, and then advances it."""
    acc = tl.zeros((R, D), dtype=tl.float32)
    for j in tl.static_range(KW):
        src = rows - (KW - 1) + j
        x = tl.load(proj_ptr + src[:, None] * proj_stride + channels[None, :],
                    mask=((src >= 0) & (src < seq_len))[:, None], other=0.0).to(tl.float32)
        acc += x * tl.load(conv_w_ptr + channels * KW + j)[None, :]
    if first_rows:
        # rows r < KW-1 also see the state: taps j < KW-1-r read state column r+j
        i = tl.arange(0, R)[:, None]
        for r in tl.static_range(KW - 1):
            from_state = tl.zeros((D,), dtype=tl.float32)
            for j in tl.static_range(KW - 1 - r):
                from_state += (tl.load(conv_w_ptr + channels * KW + j)
                               * tl.load(conv_state_ptr + channels * (KW - 1) + r + j))
            acc += tl.where(i == r, from_state[None, :], 0.0)
        _advance_conv_state(proj_ptr, proj_stride, conv_state_ptr, channels, seq_len, KW, KW_TAIL)
    return tl.where((rows < seq_len)[:, None], acc * tl.sigmoid(acc), 0.0)


@triton.jit
def _advance_conv_state(proj_ptr, proj_stride, conv_state_ptr, channels, seq_len,
                        KW: tl.constexpr, KW_TAIL: tl.constexpr):
    """conv state [channels, KW-1] <- the last KW-1 conv inputs, the older ones
    from the state itself when the prompt is shorter than KW-1. KW_TAIL: KW-1
    rounded up to a power of two."""
    j = tl.arange(0, KW_TAIL)[None, :]
    src = seq_len - (KW - 1) + j
    state = conv_state_ptr + channels[:, None] * (KW - 1)
    from_proj = tl.load(proj_ptr + src * proj_stride + channels[:, None], mask=(src >= 0) & (j < KW - 1),
                        other=0.0).to(tl.float32)
    from_state = tl.load(state + src + (KW - 1), mask=(src < 0) & (j < KW - 1), other=0.0)
    tl.debug_barrier()   # every thread has read the old state
    tl.store(state + j, tl.where(src >= 0, from_proj, from_state), mask=j < KW - 1)


@triton.jit
def _deltanet_conv_kernel(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, q_ptr, k_t_ptr, v_ptr,
                          seq_len, n_chunks, q_scale,
                          KEY_HEADS: tl.constexpr, KEY_DIM: tl.constexpr, C: tl.constexpr, R: tl.constexpr,
                          DK: tl.constexpr, DV: tl.constexpr, KW: tl.constexpr, KW_TAIL: tl.constexpr):
    """Conv + SiLU of R token rows (inside one chunk) for one head's channels:
    q (L2-normalised and scaled), K^T (L2-normalised) or V. Rows past the
    prompt, to the end of the last chunk, are written as 0."""
    rows = tl.program_id(0) * R + tl.arange(0, R)
    head = tl.program_id(1)   # q heads, then k heads, then v heads: the order of the conv channels
    n_rows = n_chunks * C
    first_rows = tl.program_id(0) == 0
    if head < 2 * KEY_HEADS:
        dk = tl.arange(0, DK)
        x = _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len, head * DK + dk,
                       first_rows, R, DK, KW, KW_TAIL)
        x *= tl.rsqrt(tl.sum(x * x, axis=1) + 1e-6)[:, None]
        if head < KEY_HEADS:
            tl.store(q_ptr + (head * n_rows + rows)[:, None] * DK + dk[None, :], x * q_scale)
        else:
            # K^T per chunk: the state pass reads it as the A operand of a tf32 product
            chunk_start = (head - KEY_HEADS) * n_rows + rows // C * C
            tl.store(k_t_ptr + chunk_start[:, None] * DK + dk[None, :] * C + (rows % C)[:, None], x)
    else:
        vh = head - 2 * KEY_HEADS
        dv = tl.arange(0, DV)
        x = _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len,
                       2 * KEY_DIM + vh * DV + dv, first_rows, R, DV, KW, KW_TAIL)
        tl.store(v_ptr + (vh * n_rows + rows)[:, None] * DV + dv[None, :], x)


@triton.jit
def _beta_gamma(proj_ptr, proj_stride, a_log_ptr, dt_bias_ptr, rows, valid, h,
                B_COL: tl.constexpr, A_COL: tl.constexpr):
    """beta = sigmoid(b) and gamma, the in-chunk cumulative sum of the log decay
    g = -e^A_log softplus(a + dt_bias), for value head h; past the prompt beta = g = 0."""
    b = tl.load(proj_ptr + rows * proj_stride + B_COL + h, mask=valid, other=0.0).to(tl.float32)
    a = tl.load(proj_ptr + rows * proj_stride + A_COL + h, mask=valid, other=0.0).to(tl.float32)
    a += tl.load(dt_bias_ptr + h)
    softplus = tl.where(a > 20.0, a, tl.log(1.0 + tl.exp(tl.minimum(a, 20.0))))
    g = tl.where(valid, -tl.exp(tl.load(a_log_ptr + h)) * softplus, 0.0)
    return tl.where(valid, tl.sigmoid(b), 0.0), tl.cumsum(g, axis=0)


@triton.jit
def _unit_lower_inverse(a, scratch_ptr, C: tl.constexpr, SUB: tl.constexpr, LOG2_SUB: tl.constexpr,
                        LOG2_BLOCKS: tl.constexpr, DOT: tl.constexpr):
    """(I + a)^-1 for a strictly lower triangular [C, C] float32 tile.
    ``scratch_ptr`` is this program's own [C, C] float32 scratch."""
    NB: tl.constexpr = C // SUB
    i = tl.arange(0, C)
    tile = i[:, None] * C + i[None, :]
    tl.store(scratch_ptr + tile, a)
    tl.debug_barrier()
    # the NB diagonal SUB x SUB blocks as one [NB, SUB, SUB] tensor
    b = tl.arange(0, NB)[:, None, None]
    r = tl.arange(0, SUB)[None, :, None]
    c = tl.arange(0, SUB)[None, None, :]
    diag = b * SUB * C + r * C + b * SUB + c
    # Each block B is nilpotent (B^SUB = 0): its series in float32 (not tf32), since
    # the powers' entries can grow to ~C(SUB-1, SUB/2) before they cancel. Batched
    # products replace a chain of SUB - 1 dependent row updates (each a cross-warp
    # reduction).
    inv = _inverse_series(tl.load(scratch_ptr + diag), tl.where(r == c, 1.0, 0.0), LOG2_SUB - 1, "ieee")
    tl.debug_barrier()
    tl.store(scratch_ptr + diag, inv)
    tl.debug_barrier()
    same_block = (i[:, None] // SUB) == (i[None, :] // SUB)
    d_inv = tl.load(scratch_ptr + tile, mask=same_block, other=0.0)
    # I + a = D (I + N) with N = D^-1 L, L the strictly block-lower part; N^NB = 0.
    below = tl.where((i[:, None] // SUB) > (i[None, :] // SUB), a, 0.0)
    series = _inverse_series(tl.dot(d_inv, below, input_precision=DOT), tl.where(i[:, None] == i[None, :], 1.0, 0.0),
                             LOG2_BLOCKS - 1, DOT)
    return tl.dot(series, d_inv, input_precision=DOT)


@triton.jit
def _inverse_series(n, eye, STEPS: tl.constexpr, DOT: tl.constexpr):
    """(I + n)^-1 = sum_k (-n)^k = (I - n)(I + n^2)(I + n^4)... for a nilpotent n
    with n^(2^(STEPS+1)) = 0: STEPS squarings. ``n`` is a tile or a batch of
    tiles, ``eye`` the identity that broadcasts against it."""
    inv = eye - n
    power = n
    for _ in tl.static_range(STEPS):
        power = tl.dot(power, power, input_precision=DOT)
        inv += tl.dot(inv, power, input_precision=DOT)
    return inv


@triton.jit
def _store_left_product(t_inv, x_ptr, x_row_stride, x_col_stride, row_scale, out_ptr,
                        C: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr, DOT: tl.constexpr):
    """out [C, D] (row-major) = t_inv diag(row_scale) x, BLOCK columns at a
    time, so that only [C, BLOCK] tiles are live."""
    i = tl.arange(0, C)
    for j in tl.static_range(D // BLOCK):
        cols = j * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + i[:, None] * x_row_stride + cols[None, :] * x_col_stride)
        tl.store(out_ptr + i[:, None] * D + cols[None, :],
                 tl.dot(t_inv, x * row_scale[:, None], input_precision=DOT))


@triton.jit
def _deltanet_wy_kernel(proj_ptr, proj_stride, a_log_ptr, dt_bias_ptr, k_t_ptr, v_ptr,
                        w_ptr, u_ptr, gamma_ptr, scratch_ptr, seq_len, n_chunks,
                        B_COL: tl.constexpr, A_COL: tl.constexpr, HEADS_PER_KEY: tl.constexpr,
                        C: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BLOCK: tl.constexpr,
                        SUB: tl.constexpr, LOG2_SUB: tl.constexpr, LOG2_BLOCKS: tl.constexpr, DOT: tl.constexpr):
    """The WY form of one chunk of one value head: gamma, then T = (I + A)^-1,
    W = T diag(beta e^gamma) K and U = T diag(beta) V."""
    n = tl.program_id(0)
    h = tl.program_id(1)
    block = h * n_chunks + n
    i = tl.arange(0, C)
    rows = n * C + i
    beta, gamma = _beta_gamma(proj_ptr, proj_stride, a_log_ptr, dt_bias_ptr, rows, rows < seq_len, h, B_COL, A_COL)
    tl.store(gamma_ptr + block * C + i, gamma)
    k_t_chunk = k_t_ptr + ((h // HEADS_PER_KEY) * n_chunks + n) * DK * C
    k_t = tl.load(k_t_chunk + tl.arange(0, DK)[:, None] * C + i[None, :])
    decay = tl.exp(tl.where(i[:, None] > i[None, :], gamma[:, None] - gamma[None, :], float("-inf")))
    a = tl.dot(tl.trans(k_t), k_t, input_precision=DOT) * decay * beta[:, None]
    t_inv = _unit_lower_inverse(a, scratch_ptr + block * C * C, C, SUB, LOG2_SUB, LOG2_BLOCKS, DOT)
    # K is read again by column blocks rather than kept live through the inverse
    _store_left_product(t_inv, k_t_chunk, 1, C, beta * tl.exp(gamma), w_ptr + block * C * DK, C, DK, BLOCK, DOT)
    _store_left_product(t_inv, v_ptr + block * C * DV, DV, 1, beta, u_ptr + block * C * DV, C, DV, BLOCK, DOT)


@triton.jit
def _deltanet_state_kernel(k_t_ptr, w_ptr, u_ptr, gamma_ptr, state_ptr, chunk_state_ptr, v_new_ptr, n_chunks,
                           HEADS_PER_KEY: tl.constexpr, C: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
                           BV: tl.constexpr, DOT: tl.constexpr):
    """The one sequential pass: carries the float32 state S of one value head,
    columns [BV], across the chunks; stores S at each chunk's start and V' = U - W S."""
    h = tl.program_id(0)
    cols = tl.program_id(1) * BV + tl.arange(0, BV)
    i = tl.arange(0, C)
    dk = tl.arange(0, DK)
    state_tile = dk[:, None] * DV + cols[None, :]
    s = tl.load(state_ptr + h * DK * DV + state_tile)
    for n in tl.range(0, n_chunks):   # software-pipelined (num_stages): loads run ahead of the products
        block = h * n_chunks + n
        w = tl.load(w_ptr + block * C * DK + i[:, None] * DK + dk[None, :])
        k_t = tl.load(k_t_ptr + ((h // HEADS_PER_KEY) * n_chunks + n) * DK * C + dk[:, None] * C + i[None, :])
        u = tl.load(u_ptr + block * C * DV + i[:, None] * DV + cols[None, :])
        gamma = tl.load(gamma_ptr + block * C + i)
        gamma_end = tl.load(gamma_ptr + block * C + C - 1)
        tl.store(chunk_state_ptr + block * DK * DV + state_tile, s)
        v_new = u - tl.dot(w, s, input_precision=DOT)
        tl.store(v_new_ptr + block * C * DV + i[:, None] * DV + cols[None, :], v_new)
        # S <- e^gamma_C S + K^T diag(e^(gamma_C - gamma)) V': the decay scales V', so K is read as stored
        s = s * tl.exp(gamma_end) + tl.dot(k_t, v_new * tl.exp(gamma_end - gamma)[:, None], input_precision=DOT)
    tl.store(state_ptr + h * DK * DV + state_tile, s)


@triton.jit
def _deltanet_output_kernel(q_ptr, k_t_ptr, gamma_ptr, chunk_state_ptr, v_new_ptr, out_ptr, seq_len, n_chunks,
                            HEADS: tl.constexpr, HEADS_PER_KEY: tl.constexpr, C: tl.constexpr,
                            DK: tl.constexpr, DV: tl.constexpr, BV: tl.constexpr, DOT: tl.constexpr):
    """O = (Q e^gamma) S + P V' for one chunk, value head and block of value
    columns, with P = (Q K^T) * e^(gamma_t - gamma_s) (s <= t); all in parallel."""
    cols = tl.program_id(0) * BV + tl.arange(0, BV)   # fastest: programs sharing q and K run together
    n = tl.program_id(1)
    h = tl.program_id(2)
    block = h * n_chunks + n
    key_block = (h // HEADS_PER_KEY) * n_chunks + n
    i = tl.arange(0, C)
    dk = tl.arange(0, DK)
    q = tl.load(q_ptr + key_block * C * DK + i[:, None] * DK + dk[None, :])
    k_t = tl.load(k_t_ptr + key_block * DK * C + dk[:, None] * C + i[None, :])
    gamma = tl.load(gamma_ptr + block * C + i)
    decay = tl.exp(tl.where(i[:, None] >= i[None, :], gamma[:, None] - gamma[None, :], float("-inf")))
    scores = tl.dot(q, k_t, input_precision=DOT) * decay
    s = tl.load(chunk_state_ptr + block * DK * DV + dk[:, None] * DV + cols[None, :])
    v_new = tl.load(v_new_ptr + block * C * DV + i[:, None] * DV + cols[None, :])
    # diag(e^gamma) (Q S) rather than (Q e^gamma) S: both products read the same q
    o = (tl.dot(q, s, input_precision=DOT) * tl.exp(gamma)[:, None]
         + tl.dot(scores, v_new, input_precision=DOT))
    rows = n * C + i
    tl.store(out_ptr + rows[:, None] * (HEADS * DV) + h * DV + cols[None, :], o, mask=(rows < seq_len)[:, None])


class _ChunkForms(NamedTuple):
    """What the passes over the chunks read, float32, chunk-major; q and K per
    key head, the rest per value head."""
    q: Tensor          # [Hk, N, C, Dk], L2-normalised and scaled
    k_t: Tensor        # [Hk, N, Dk, C], L2-normalised
    w: Tensor          # [Hv, N, C, Dk]
    u: Tensor          # [Hv, N, C, Dv]
    gamma: Tensor      # [Hv, N, C]


def deltanet(proj: Tensor, conv_state: Tensor, deltanet_state: Tensor, w: DeltaNetWeights,
             c: ModelConfig, tuning: DeltaNetTuning | None = None) -> Tensor:
    """``tuning``: the launch shapes; by default ``tuning_for`` the prompt's length."""
    _check_power_of_two(key_head_dim=c.linear_key_head_dim, value_head_dim=c.linear_value_head_dim)
    assert proj.stride(1) == 1 and deltanet_state.is_contiguous() and conv_state.is_contiguous()
    tuning = tuning or tuning_for(proj.shape[0])
    launches = delta_rule_launches(c, tuning)
    _check_int32_offsets(proj, c, tuning.chunk)
    chunks = _chunk_forms(proj, conv_state, w, c, launches)
    chunk_states, v_new = _carry_state(chunks, deltanet_state, launches[_deltanet_state_kernel])
    return _chunk_outputs(chunks, chunk_states, v_new, proj.shape[0], launches[_deltanet_output_kernel])


def delta_rule_launches(c: ModelConfig, tuning: DeltaNetTuning, check: bool = True) -> dict[triton.JITFunction, dict]:
    """Each delta-rule kernel -> the keywords ``deltanet`` launches it with for
    model c (constexprs, num_warps, num_stages); the offline compile test reads them too.
    Raises ValueError for a shape Triton would miscompile (``unsafe_products``)
    unless ``check`` is off (the test that compiles such shapes on purpose)."""
    if check:
        unsafe = _unsafe_for(c, tuning)
        if unsafe:
            raise ValueError(f"{tuning} is unsafe for {c.name}: " + "; ".join(unsafe))
    return _launches(c, tuning)


@functools.lru_cache(maxsize=64)
def _unsafe_for(c: ModelConfig, tuning: DeltaNetTuning) -> tuple[str, ...]:
    return tuple(unsafe_products(_launches(c, tuning)))


def _launches(c: ModelConfig, tuning: DeltaNetTuning) -> dict[triton.JITFunction, dict]:
    hv, dk, dv = c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim
    kernel_width, heads_per_key = c.linear_conv_kernel_dim, c.value_heads_per_key_head
    shapes = dict(C=tuning.chunk, DK=dk, DV=dv)
    return {
        _deltanet_conv_kernel: dict(
            KEY_HEADS=c.linear_num_key_heads, KEY_DIM=c.key_dim, R=tuning.conv_rows, KW=kernel_width,
            KW_TAIL=triton.next_power_of_2(kernel_width - 1), **shapes, num_warps=tuning.conv_warps, **FP_FUSION),
        _deltanet_wy_kernel: dict(
            B_COL=c.conv_dim + c.value_dim, A_COL=c.conv_dim + c.value_dim + hv, HEADS_PER_KEY=heads_per_key,
            BLOCK=min(tuning.wy_block, dk, dv), SUB=SUB_BLOCK, LOG2_SUB=SUB_BLOCK.bit_length() - 1, LOG2_BLOCKS=(tuning.chunk // SUB_BLOCK).bit_length() - 1,
            DOT=DOT_PRECISION, **shapes, num_warps=tuning.wy_warps, **FP_FUSION),
        _deltanet_state_kernel: dict(
            HEADS_PER_KEY=heads_per_key, BV=min(tuning.state_block_v, dv), DOT=DOT_PRECISION, **shapes,
            num_warps=tuning.state_warps, num_stages=tuning.state_stages, **FP_FUSION),
        _deltanet_output_kernel: dict(
            HEADS=hv, HEADS_PER_KEY=heads_per_key, BV=min(tuning.output_block_v, dv), DOT=DOT_PRECISION, **shapes,
            num_warps=tuning.output_warps, **FP_FUSION),
    }


def tf32_products(kernel: triton.JITFunction, launch: dict) -> list[tuple[int, int]]:
    """The [M, N] results of ``kernel``'s tf32 ``tl.dot`` products under ``launch``."""
    chunk, dk = launch["C"], launch["DK"]
    if kernel is _deltanet_wy_kernel:     # A = (K K^T)..., the inverse's products, T x (columns of K or V)
        return [(chunk, chunk), (chunk, launch["BLOCK"])]
    if kernel is _deltanet_state_kernel:  # W S, K^T V'
        return [(chunk, launch["BV"]), (dk, launch["BV"])]
    if kernel is _deltanet_output_kernel:  # Q K^T, Q S, P V'
        return [(chunk, chunk), (chunk, launch["BV"])]
    return []


def wgmma_n(m: int, n: int, num_warps: int) -> int | None:
    """N of the wgmma instruction Triton 3.5/3.6 issues on sm_90 for a product with an
    [m, n] result at ``num_warps`` (None: no wgmma, e.g. m < 64). Warp groups (4
    warps each) go along M first, one per 64 rows; those left over split N, so
    a [64, 16] result at 8 warps becomes two m64n8 halves."""
    if num_warps < 4 or m < 64:
        return None
    groups = num_warps // 4
    return min(n, 256) // max(1, groups // min(groups, m // 64))


def unsafe_products(launches: dict[triton.JITFunction, dict]) -> list[str]:
    """The products Triton would issue as tf32 wgmma with N < 16. Those read
    their shared-memory B operand past its end (Triton pads it only for N >= 16:
    triton-lang/triton#10629), which on an H100 ends in "an illegal memory
    access" or, silently, garbage; e.g. the state pass at 8 warps and 16 columns."""
    found = []
    for kernel, launch in launches.items():
        warps = launch.get("num_warps", 4)
        for m, n in tf32_products(kernel, launch):
            instr_n = wgmma_n(m, n, warps)
            if instr_n is not None and instr_n < 16:
                found.append(f"{kernel.__name__} at num_warps={warps} would compute its [{m}, {n}] product "
                             f"as tf32 wgmma m64n{instr_n}k8, which reads shared memory out of bounds "
                             f"(triton-lang/triton#10629); use fewer warps or wider column blocks")
    return found


def _check_int32_offsets(proj: Tensor, c: ModelConfig, chunk: int) -> None:
    """The kernels index each tensor with int32 element offsets: every tensor
    (padded to whole chunks) must stay below 2^31 elements."""
    n_chunks = triton.cdiv(proj.shape[0], chunk)
    hv, dk, dv = c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim
    largest = max(proj.shape[0] * proj.stride(0),                     # the projection
                  hv * n_chunks * max(dk * dv, chunk * chunk, chunk * max(dk, dv)))  # chunk states, scratch, W/U/V'
    if largest >= 2 ** 31:
        raise ValueError(f"a {proj.shape[0]}-token prompt needs int32 offsets past 2^31 in the delta rule "
                         f"({largest} elements in one tensor): split the prefill")


def _chunk_forms(proj: Tensor, conv_state: Tensor, w: DeltaNetWeights, c: ModelConfig,
                 launches: dict[triton.JITFunction, dict]) -> _ChunkForms:
    """Runs the conv and WY kernels (the conv kernel also advances ``conv_state``)."""
    conv, wy = launches[_deltanet_conv_kernel], launches[_deltanet_wy_kernel]
    seq_len, chunk = proj.shape[0], conv["C"]
    hk, hv = c.linear_num_key_heads, c.linear_num_value_heads
    dk, dv = c.linear_key_head_dim, c.linear_value_head_dim
    n_chunks = triton.cdiv(seq_len, chunk)
    f32 = dict(dtype=torch.float32, device=proj.device)
    q, k_t = torch.empty(hk, n_chunks, chunk, dk, **f32), torch.empty(hk, n_chunks, dk, chunk, **f32)
    v = torch.empty(hv, n_chunks, chunk, dv, **f32)
    _deltanet_conv_kernel[(n_chunks * chunk // conv["R"], 2 * hk + hv)](
        proj, proj.stride(0), conv_state, w.conv, q, k_t, v, seq_len, n_chunks, dk ** -0.5, **conv)
    forms = _ChunkForms(q, k_t, w=torch.empty(hv, n_chunks, chunk, dk, **f32), u=torch.empty_like(v),
                        gamma=torch.empty(hv, n_chunks, chunk, **f32))
    scratch = torch.empty(hv, n_chunks, chunk, chunk, **f32)
    _deltanet_wy_kernel[(n_chunks, hv)](
        proj, proj.stride(0), w.a_log, w.dt_bias, k_t, v, forms.w, forms.u, forms.gamma, scratch, seq_len, n_chunks,
        **wy)
    return forms


def _carry_state(chunks: _ChunkForms, deltanet_state: Tensor, launch: dict) -> tuple[Tensor, Tensor]:
    """Runs ``deltanet_state`` (updated in place) over the chunks; returns the
    state at each chunk's start [Hv, N, Dk, Dv] and V' [Hv, N, C, Dv]."""
    hv, n_chunks, chunk, dv = chunks.u.shape
    dk = chunks.k_t.shape[2]
    chunk_states = torch.empty(hv, n_chunks, dk, dv, dtype=torch.float32, device=deltanet_state.device)
    v_new = torch.empty_like(chunks.u)
    _deltanet_state_kernel[(hv, dv // launch["BV"])](
        chunks.k_t, chunks.w, chunks.u, chunks.gamma, deltanet_state, chunk_states, v_new, n_chunks, **launch)
    return chunk_states, v_new


def _chunk_outputs(chunks: _ChunkForms, chunk_states: Tensor, v_new: Tensor, seq_len: int, launch: dict) -> Tensor:
    hv, n_chunks, chunk, dv = v_new.shape
    out = torch.empty(seq_len, hv, dv, dtype=torch.float32, device=v_new.device)
    _deltanet_output_kernel[(dv // launch["BV"], n_chunks, hv)](
        chunks.q, chunks.k_t, chunks.gamma, chunk_states, v_new, out, seq_len, n_chunks, **launch)
    return out


def _check_contiguous(**tensors: Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")


def _check_power_of_two(**sizes: int) -> None:
    for name, n in sizes.items():
        if n < 16 or n & (n - 1):
            raise ValueError(f"the Triton prefill needs {name} to be a power of two >= 16, got {n}")
