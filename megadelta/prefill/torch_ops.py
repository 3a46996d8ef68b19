"""The prefill's fused stages in plain PyTorch: the CPU path, and the
definition each Triton kernel in ``triton_ops`` must match.

Every stage has the same signature in both modules. Activations between the
GEMMs: the residual stream ``x`` is float32 [T, hidden]; GEMM inputs are in the
compute dtype (bf16 on GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ModelConfig
from ..ops.deltanet import causal_conv1d, chunked_gated_delta_rule, l2_normalize
from .weights import DeltaNetWeights


def add_rmsnorm(x: Tensor, delta: Tensor | None, weight: Tensor, eps: float,
                out_dtype: torch.dtype) -> Tensor:
    """x += delta (in place, float32), then the zero-centred RMSNorm of x."""
    if delta is not None:
        x += delta.float()
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight)).to(out_dtype)


def silu_mul(gate_up: Tensor) -> Tensor:
    """silu(gate) * up for gate_up = [gate | up] [T, 2*I]."""
    gate, up = gate_up.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(gate_up.dtype)


def deltanet(proj: Tensor, conv_state: Tensor, deltanet_state: Tensor, w: DeltaNetWeights,
             c: ModelConfig) -> Tensor:
    """The Gated DeltaNet mixer from the fused projection proj = [q|k|v|z|b|a] [T, *]:
    causal conv + SiLU, q/k L2 norm, beta and g, the chunked gated delta rule.
    Updates ``conv_state`` [conv_dim, K-1] and ``deltanet_state`` [Hv, Dk, Dv] in
    place; returns the rule's output o [T, Hv, Dv] float32."""
    seq_len, dk, hv = proj.shape[0], c.linear_key_head_dim, c.linear_num_value_heads
    qkv = causal_conv1d(proj[:, :c.conv_dim], w.conv, conv_state)
    q, k, v = qkv.split([c.key_dim, c.key_dim, c.value_dim], dim=-1)
    q = l2_normalize(q.reshape(seq_len, -1, dk)) * dk ** -0.5
    k = l2_normalize(k.reshape(seq_len, -1, dk))
    q = q.repeat_interleave(c.value_heads_per_key_head, dim=1)
    k = k.repeat_interleave(c.value_heads_per_key_head, dim=1)
    v = v.reshape(seq_len, hv, c.linear_value_head_dim)
    b, a = proj[:, c.conv_dim + c.value_dim:].float().split(hv, dim=-1)
    g = -w.a_log.exp() * F.softplus(a + w.dt_bias)
    return chunked_gated_delta_rule(q, k, v, g, b.sigmoid(), deltanet_state)


def gated_rmsnorm(o: Tensor, z: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> Tensor:
    """weight * rmsnorm(o) * silu(z) per value head: o [T, Hv, Dv] float32, z a
    [T, Hv*Dv] view of the projection; returns [T, Hv*Dv] in out_dtype."""
    normed = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + eps) * weight
    return (normed * F.silu(z.float().view_as(o))).reshape(o.shape[0], -1).to(out_dtype)


def qk_norm_rope(x: Tensor, weight: Tensor, eps: float, cos: Tensor, sin: Tensor, out: Tensor) -> None:
    """Zero-centred RMSNorm per head then rotate-half RoPE on the first 2*cos.shape[1]
    dims. x [T, heads, D] (a view of the projection), cos/sin [T, rotary/2] float32;
    writes out [heads, T, D] (a view: the query buffer or a KV-cache slice)."""
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight)
    half = cos.shape[1]
    first, second, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    cos, sin = cos[:, None], sin[:, None]
    rotated = torch.cat([first * cos - second * sin, second * cos + first * sin, rest], dim=-1)
    out.copy_(rotated.transpose(0, 1))
