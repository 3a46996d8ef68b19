"""The prefill's fused stages as Triton kernels (the GPU path).

Each public function has the signature and meaning of its namesake in
``torch_ops``; the GPU tests compare the two on random inputs.

The gated delta rule runs in two kernels (chunks of C = 64 tokens):

1. ``_deltanet_chunks_kernel``, one program per (chunk, value head), all in
   parallel: causal conv + SiLU from the projection (and the previous conv
   inputs for the first K-1 rows), q/k L2 norm, beta, g and the in-chunk
   cumulative decay gamma, then the WY form of the chunk:
   T = (I + A)^-1 with A[t,s] = beta_t e^(gamma_t-gamma_s) k_t.k_s (s < t),
   W = T diag(beta e^gamma) K, U = T diag(beta) V, the masked decayed scores
   P = (Q K^T) * e^(gamma_t-gamma_s) (s <= t), Qd = Q e^gamma, Kd = K e^(gamma_C-gamma).
   The inverse: forward substitution inside the 16x16 diagonal blocks, then
   the block-triangular remainder by a short Neumann series (nilpotent of
   degree C/16), which keeps every step well conditioned.
2. ``_deltanet_scan_kernel``, one program per (value head, block of value
   columns): carries the float32 state S across chunks in registers:
   V' = U - W S, O = Qd S + P V', S <- e^gamma_C S + Kd^T V'.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..config import ModelConfig
from .weights import DeltaNetWeights

CHUNK = 64            # tokens per delta-rule chunk
SUB_BLOCK = 16        # diagonal block solved by forward substitution
SCAN_BLOCK_V = 32     # value columns per scan program
# tf32 tensor-core products: ~1e-3 relative error per product, well inside the
# bf16 noise of the projections around them.
DOT_PRECISION = "tf32"


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
                                 num_warps=4)
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
    _silu_mul_kernel[(rows, triton.cdiv(n_cols, block))](gate_up, out, n_cols, BLOCK=block, num_warps=4)
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
                                      HEADS_BLOCK=triton.next_power_of_2(heads), D=d, num_warps=4)
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
                                           D=d, HALF=cos.shape[1], num_warps=4)


# ---- the gated delta rule -------------------------------------------------

@triton.jit
def _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len, channels, first_chunk,
               C: tl.constexpr, D: tl.constexpr, KW: tl.constexpr):
    """silu(causal depthwise conv) at token rows [C] for channels [D]; inputs
    before the prompt come from the conv state (the last KW-1 inputs)."""
    acc = tl.zeros((C, D), dtype=tl.float32)
    for j in tl.static_range(KW):
        src = rows - (KW - 1) + j
        x = tl.load(proj_ptr + src[:, None] * proj_stride + channels[None, :],
                    mask=((src >= 0) & (src < seq_len))[:, None], other=0.0).to(tl.float32)
        acc += x * tl.load(conv_w_ptr + channels * KW + j)[None, :]
    if first_chunk:
        # rows r < KW-1 also see the state: taps j < KW-1-r read state column r+j
        i = tl.arange(0, C)[:, None]
        for r in tl.static_range(KW - 1):
            from_state = tl.zeros((D,), dtype=tl.float32)
            for j in tl.static_range(KW - 1 - r):
                from_state += (tl.load(conv_w_ptr + channels * KW + j)
                               * tl.load(conv_state_ptr + channels * (KW - 1) + r + j))
            acc += tl.where(i == r, from_state[None, :], 0.0)
    return acc * tl.sigmoid(acc)


@triton.jit
def _unit_lower_inverse(a, scratch_ptr, C: tl.constexpr, SUB: tl.constexpr, LOG2_BLOCKS: tl.constexpr,
                        DOT: tl.constexpr):
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
    blocks = tl.load(scratch_ptr + diag)
    inv = tl.where(r == c, 1.0, 0.0) + tl.zeros((NB, SUB, SUB), dtype=tl.float32)
    for row in tl.static_range(1, SUB):
        # inv[row] = e_row - sum_{j<row} a[row, j] inv[j]  (rows j < row are final)
        a_row = tl.sum(tl.where(r == row, blocks, 0.0), axis=1)
        new_row = tl.where(c == row, 1.0, 0.0) - tl.sum(a_row[:, :, None] * inv, axis=1)[:, None, :]
        inv = tl.where(r == row, new_row, inv)
    tl.debug_barrier()
    tl.store(scratch_ptr + diag, inv)
    tl.debug_barrier()
    same_block = (i[:, None] // SUB) == (i[None, :] // SUB)
    d_inv = tl.load(scratch_ptr + tile, mask=same_block, other=0.0)
    # I + a = D (I + N) with N = D^-1 L, L the strictly block-lower part; N^NB = 0, so
    # (I + N)^-1 = sum_k (-N)^k = (I - N)(I + N^2)(I + N^4)...
    below = tl.where((i[:, None] // SUB) > (i[None, :] // SUB), a, 0.0)
    power = -tl.dot(d_inv, below, input_precision=DOT)
    series = tl.where(i[:, None] == i[None, :], 1.0, 0.0) + power
    for _ in tl.static_range(LOG2_BLOCKS - 1):
        power = tl.dot(power, power, input_precision=DOT)
        series += tl.dot(series, power, input_precision=DOT)
    return tl.dot(series, d_inv, input_precision=DOT)


@triton.jit
def _deltanet_chunks_kernel(
        proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, a_log_ptr, dt_bias_ptr,
        qd_ptr, kd_ptr, w_ptr, u_ptr, p_ptr, decay_ptr, scratch_ptr,
        seq_len, n_chunks, q_scale,
        KEY_DIM: tl.constexpr, B_COL: tl.constexpr, A_COL: tl.constexpr, HEADS_PER_KEY: tl.constexpr,
        C: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, KW: tl.constexpr,
        SUB: tl.constexpr, LOG2_BLOCKS: tl.constexpr, DOT: tl.constexpr):
    n = tl.program_id(0)
    h = tl.program_id(1)
    kh = h // HEADS_PER_KEY
    i = tl.arange(0, C)
    rows = n * C + i
    valid = rows < seq_len
    dk = tl.arange(0, DK)
    dv = tl.arange(0, DV)

    # Stages are ordered so that few [C, D] tiles are live at once (registers).
    # Padded rows (past the prompt) get k = q = v = beta = g = 0: they change nothing.
    k = _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len,
                   KEY_DIM + kh * DK + dk, n == 0, C, DK, KW)
    k = tl.where(valid[:, None], k * tl.rsqrt(tl.sum(k * k, axis=1) + 1e-6)[:, None], 0.0)
    b = tl.load(proj_ptr + rows * proj_stride + B_COL + h, mask=valid, other=0.0).to(tl.float32)
    a = tl.load(proj_ptr + rows * proj_stride + A_COL + h, mask=valid, other=0.0).to(tl.float32)
    beta = tl.where(valid, tl.sigmoid(b), 0.0)
    a += tl.load(dt_bias_ptr + h)
    softplus = tl.where(a > 20.0, a, tl.log(1.0 + tl.exp(tl.minimum(a, 20.0))))
    g = tl.where(valid, -tl.exp(tl.load(a_log_ptr + h)) * softplus, 0.0)
    gamma = tl.cumsum(g, axis=0)
    gamma_end = tl.sum(tl.where(i == C - 1, gamma, 0.0), axis=0)
    causal = i[:, None] >= i[None, :]
    decay = tl.exp(tl.where(causal, gamma[:, None] - gamma[None, :], float("-inf")))
    block = h * n_chunks + n
    tile_k = block * C * DK + i[:, None] * DK + dk[None, :]

    kk = tl.dot(k, tl.trans(k), input_precision=DOT)
    a_sys = tl.where(i[:, None] > i[None, :], kk * decay * beta[:, None], 0.0)
    t_inv = _unit_lower_inverse(a_sys, scratch_ptr + block * C * C, C, SUB, LOG2_BLOCKS, DOT)
    tl.store(w_ptr + tile_k, tl.dot(t_inv, k * (beta * tl.exp(gamma))[:, None], input_precision=DOT))
    tl.store(kd_ptr + tile_k, k * tl.exp(gamma_end - gamma)[:, None])

    q = _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len, kh * DK + dk, n == 0, C, DK, KW)
    q = tl.where(valid[:, None], q * tl.rsqrt(tl.sum(q * q, axis=1) + 1e-6)[:, None] * q_scale, 0.0)
    scores = tl.dot(q, tl.trans(k), input_precision=DOT) * decay
    tl.store(p_ptr + block * C * C + i[:, None] * C + i[None, :], scores)
    tl.store(qd_ptr + tile_k, q * tl.exp(gamma)[:, None])

    v = _conv_silu(proj_ptr, proj_stride, conv_state_ptr, conv_w_ptr, rows, seq_len,
                   2 * KEY_DIM + h * DV + dv, n == 0, C, DV, KW)
    v = tl.where(valid[:, None], v, 0.0)
    u = tl.dot(t_inv, v * beta[:, None], input_precision=DOT)
    tl.store(u_ptr + block * C * DV + i[:, None] * DV + dv[None, :], u)
    tl.store(decay_ptr + block, tl.exp(gamma_end))


@triton.jit
def _deltanet_scan_kernel(qd_ptr, kd_ptr, w_ptr, u_ptr, p_ptr, decay_ptr, state_ptr, out_ptr,
                          seq_len, n_chunks,
                          HEADS: tl.constexpr, C: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
                          BV: tl.constexpr, DOT: tl.constexpr):
    h = tl.program_id(0)
    cols = tl.program_id(1) * BV + tl.arange(0, BV)
    i = tl.arange(0, C)
    dk = tl.arange(0, DK)
    state_ptrs = state_ptr + h * DK * DV + dk[:, None] * DV + cols[None, :]
    s = tl.load(state_ptrs)
    for n in tl.range(0, n_chunks):
        block = h * n_chunks + n
        w = tl.load(w_ptr + block * C * DK + i[:, None] * DK + dk[None, :])
        u = tl.load(u_ptr + block * C * DV + i[:, None] * DV + cols[None, :])
        v_new = u - tl.dot(w, s, input_precision=DOT)
        qd = tl.load(qd_ptr + block * C * DK + i[:, None] * DK + dk[None, :])
        p = tl.load(p_ptr + block * C * C + i[:, None] * C + i[None, :])
        o = tl.dot(qd, s, input_precision=DOT) + tl.dot(p, v_new, input_precision=DOT)
        rows = n * C + i
        tl.store(out_ptr + rows[:, None] * (HEADS * DV) + h * DV + cols[None, :], o,
                 mask=(rows < seq_len)[:, None])
        kd = tl.load(kd_ptr + block * C * DK + i[:, None] * DK + dk[None, :])
        s = s * tl.load(decay_ptr + block) + tl.dot(tl.trans(kd), v_new, input_precision=DOT)
    tl.store(state_ptrs, s)


def deltanet(proj: Tensor, conv_state: Tensor, deltanet_state: Tensor, w: DeltaNetWeights,
             c: ModelConfig) -> Tensor:
    seq_len = proj.shape[0]
    hv, dk, dv = c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim
    _check_power_of_two(key_head_dim=dk, value_head_dim=dv)
    assert proj.stride(1) == 1 and deltanet_state.is_contiguous() and conv_state.is_contiguous()
    n_chunks = triton.cdiv(seq_len, CHUNK)
    f32 = dict(dtype=torch.float32, device=proj.device)
    qd = torch.empty(hv, n_chunks, CHUNK, dk, **f32)
    kd, w_mat = torch.empty_like(qd), torch.empty_like(qd)
    u = torch.empty(hv, n_chunks, CHUNK, dv, **f32)
    scores = torch.empty(hv, n_chunks, CHUNK, CHUNK, **f32)
    scratch = torch.empty_like(scores)
    chunk_decay = torch.empty(hv, n_chunks, **f32)
    _deltanet_chunks_kernel[(n_chunks, hv)](
        proj, proj.stride(0), conv_state, w.conv, w.a_log, w.dt_bias,
        qd, kd, w_mat, u, scores, chunk_decay, scratch, seq_len, n_chunks, dk ** -0.5,
        KEY_DIM=c.key_dim, B_COL=c.conv_dim + c.value_dim, A_COL=c.conv_dim + c.value_dim + hv,
        HEADS_PER_KEY=c.value_heads_per_key_head, C=CHUNK, DK=dk, DV=dv, KW=c.linear_conv_kernel_dim,
        SUB=SUB_BLOCK, LOG2_BLOCKS=(CHUNK // SUB_BLOCK).bit_length() - 1, DOT=DOT_PRECISION,
        num_warps=8)
    # The kernel above read the old conv state; only now overwrite it.
    update_conv_state(conv_state, proj[:, :c.conv_dim])
    out = torch.empty(seq_len, hv, dv, **f32)
    block_v = min(SCAN_BLOCK_V, dv)
    _deltanet_scan_kernel[(hv, dv // block_v)](
        qd, kd, w_mat, u, scores, chunk_decay, deltanet_state, out, seq_len, n_chunks,
        HEADS=hv, C=CHUNK, DK=dk, DV=dv, BV=block_v, DOT=DOT_PRECISION, num_warps=8,
        num_stages=1)   # the loop's loads, multi-buffered, would not fit in shared memory
    return out


def update_conv_state(conv_state: Tensor, qkv: Tensor) -> None:
    """conv_state [C, K-1] <- the last K-1 conv inputs, the older ones from the
    state itself when the prompt is shorter than K-1."""
    keep = conv_state.shape[1]
    tail = qkv[-keep:].T.to(torch.float32)
    conv_state.copy_(torch.cat([conv_state, tail], dim=1)[:, -keep:])


def _check_contiguous(**tensors: Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")


def _check_power_of_two(**sizes: int) -> None:
    for name, n in sizes.items():
        if n < 16 or n & (n - 1):
            raise ValueError(f"the Triton prefill needs {name} to be a power of two >= 16, got {n}")
