"""The PyTorch reference model for Qwen3.5 text (hybrid Gated DeltaNet + attention).

Readable first: one sequence (batch 1), any device, float32 or bf16. Norms,
the conv and the delta rule run in float32 whatever the model dtype; the
matrices run in the model dtype. Every faster backend is checked against this
module, and this module is checked against Hugging Face transformers'
``Qwen3_5ForCausalLM``.

Parameter names match a ``Qwen3_5ForCausalLM`` state dict without the
``model.`` prefix, so ``checkpoint.load_weights`` output loads as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DELTANET, ModelConfig
from .ops.deltanet import (causal_conv1d, chunked_gated_delta_rule, l2_normalize,
                           recurrent_gated_delta_rule)
from .state import SequenceState


def rms_norm(x: Tensor, eps: float) -> Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _param(*shape: int, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device="meta"), requires_grad=False)


class Linear(nn.Module):
    """A bias-free projection y = x W^T (W stored [out, in], as in HF)."""

    def __init__(self, d_in: int, d_out: int, dtype: torch.dtype):
        super().__init__()
        self.weight = _param(d_out, d_in, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return x.to(self.weight.dtype) @ self.weight.T


class ZeroCentredRMSNorm(nn.Module):
    """x / rms(x) * (1 + w): Qwen3.5 stores the scale minus one."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = _param(dim, dtype=torch.float32)

    def forward(self, x: Tensor) -> Tensor:
        return (rms_norm(x, self.eps) * (1.0 + self.weight.float())).to(x.dtype)


class GatedRMSNorm(nn.Module):
    """w * x / rms(x) * silu(z), per value head (the DeltaNet output norm; not zero-centred)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = _param(dim, dtype=torch.float32)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        normed = rms_norm(x, self.eps).to(x.dtype) * self.weight
        return (normed * F.silu(z.float())).to(x.dtype)


class Conv1dWeight(nn.Module):
    def __init__(self, channels: int, kernel: int, dtype: torch.dtype):
        super().__init__()
        self.weight = _param(channels, 1, kernel, dtype=dtype)


class GatedDeltaNet(nn.Module):
    def __init__(self, c: ModelConfig, dtype: torch.dtype):
        super().__init__()
        self.c = c
        h, hv = c.hidden_size, c.linear_num_value_heads
        self.in_proj_qkv = Linear(h, c.conv_dim, dtype)
        self.in_proj_z = Linear(h, c.value_dim, dtype)
        self.in_proj_b = Linear(h, hv, dtype)
        self.in_proj_a = Linear(h, hv, dtype)
        self.conv1d = Conv1dWeight(c.conv_dim, c.linear_conv_kernel_dim, dtype)
        self.A_log = _param(hv, dtype=torch.float32)
        self.dt_bias = _param(hv, dtype=torch.float32)
        self.norm = GatedRMSNorm(c.linear_value_head_dim, c.rms_norm_eps)
        self.out_proj = Linear(c.value_dim, h, dtype)

    def forward(self, x: Tensor, conv_state: Tensor, deltanet_state: Tensor, recurrent: bool) -> Tensor:
        c, seq_len = self.c, x.shape[0]
        qkv = causal_conv1d(self.in_proj_qkv(x), self.conv1d.weight[:, 0], conv_state)
        q, k, v = qkv.split([c.key_dim, c.key_dim, c.value_dim], dim=-1)
        q = l2_normalize(q.reshape(seq_len, -1, c.linear_key_head_dim)) * c.linear_key_head_dim ** -0.5
        k = l2_normalize(k.reshape(seq_len, -1, c.linear_key_head_dim))
        # Grouped value heads: each q/k head serves consecutive value heads.
        q = q.repeat_interleave(c.value_heads_per_key_head, dim=1)
        k = k.repeat_interleave(c.value_heads_per_key_head, dim=1)
        v = v.reshape(seq_len, -1, c.linear_value_head_dim)
        beta = self.in_proj_b(x).float().sigmoid()
        g = -self.A_log.float().exp() * F.softplus(self.in_proj_a(x).float() + self.dt_bias.float())
        rule = recurrent_gated_delta_rule if recurrent else chunked_gated_delta_rule
        o = rule(q, k, v, g, beta, deltanet_state).to(x.dtype)
        z = self.in_proj_z(x).reshape(seq_len, -1, c.linear_value_head_dim)
        return self.out_proj(self.norm(o, z).reshape(seq_len, -1))


def rotary(positions: Tensor, c: ModelConfig) -> tuple[Tensor, Tensor]:
    """cos and sin [T, rotary_dim] for rotate-half RoPE. Qwen3.5's multimodal
    rope gives text tokens one shared position in all sections: plain RoPE."""
    inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, c.rotary_dim, 2, dtype=torch.float32,
                                                   device=positions.device) / c.rotary_dim)
    freqs = positions.float()[:, None] * inv_freq
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first rotary_dim dims of x [T, heads, head_dim]; the rest pass through."""
    dim = cos.shape[-1]
    rot, rest = x[..., :dim].float(), x[..., dim:]
    first, second = rot.chunk(2, dim=-1)
    rotated = rot * cos[:, None] + torch.cat([-second, first], dim=-1) * sin[:, None]
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)


class GatedAttention(nn.Module):
    def __init__(self, c: ModelConfig, dtype: torch.dtype):
        super().__init__()
        self.c = c
        h = c.hidden_size
        # Per head: head_dim query rows then head_dim output-gate rows.
        self.q_proj = Linear(h, 2 * c.q_size, dtype)
        self.k_proj = Linear(h, c.kv_size, dtype)
        self.v_proj = Linear(h, c.kv_size, dtype)
        self.o_proj = Linear(c.q_size, h, dtype)
        self.q_norm = ZeroCentredRMSNorm(c.head_dim, c.rms_norm_eps)
        self.k_norm = ZeroCentredRMSNorm(c.head_dim, c.rms_norm_eps)

    def forward(self, x: Tensor, k_cache: Tensor, v_cache: Tensor, start: int) -> Tensor:
        c, seq_len = self.c, x.shape[0]
        q, gate = self.q_proj(x).reshape(seq_len, -1, 2 * c.head_dim).chunk(2, dim=-1)
        q = self.q_norm(q)
        k = self.k_norm(self.k_proj(x).reshape(seq_len, -1, c.head_dim))
        v = self.v_proj(x).reshape(seq_len, -1, c.head_dim)
        cos, sin = rotary(torch.arange(start, start + seq_len, device=x.device), c)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        end = start + seq_len
        k_cache[:, start:end] = k.transpose(0, 1).to(k_cache.dtype)
        v_cache[:, start:end] = v.transpose(0, 1).to(v_cache.dtype)
        keys = k_cache[:, :end].repeat_interleave(c.queries_per_kv_head, dim=0).to(q.dtype)
        values = v_cache[:, :end].repeat_interleave(c.queries_per_kv_head, dim=0).to(q.dtype)
        # Query t (at position start+t) sees positions 0..start+t.
        visible = torch.ones(seq_len, end, dtype=torch.bool, device=x.device).tril(start)
        out = F.scaled_dot_product_attention(q.transpose(0, 1), keys, values, attn_mask=visible,
                                             scale=c.head_dim ** -0.5)
        out = out.transpose(0, 1).reshape(seq_len, -1) * torch.sigmoid(gate.reshape(seq_len, -1))
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c: ModelConfig, dtype: torch.dtype):
        super().__init__()
        self.gate_proj = Linear(c.hidden_size, c.intermediate_size, dtype)
        self.up_proj = Linear(c.hidden_size, c.intermediate_size, dtype)
        self.down_proj = Linear(c.intermediate_size, c.hidden_size, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig, layer_type: str, dtype: torch.dtype):
        super().__init__()
        self.is_deltanet = layer_type == DELTANET
        if self.is_deltanet:
            self.linear_attn = GatedDeltaNet(c, dtype)
        else:
            self.self_attn = GatedAttention(c, dtype)
        self.mlp = MLP(c, dtype)
        self.input_layernorm = ZeroCentredRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = ZeroCentredRMSNorm(c.hidden_size, c.rms_norm_eps)


class Qwen35Model(nn.Module):
    def __init__(self, config: ModelConfig, weights: dict[str, Tensor], dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.config, self.dtype, self.device = config, dtype, torch.device(device)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, device="meta", dtype=dtype)
        self.embed_tokens.weight.requires_grad_(False)
        self.layers = nn.ModuleList(DecoderLayer(config, t, dtype) for t in config.layer_types)
        self.norm = ZeroCentredRMSNorm(config.hidden_size, config.rms_norm_eps)
        # Which slot of the stacked state each layer owns.
        self.state_slot = {i: n for kind in (config.deltanet_layers, config.attention_layers)
                           for n, i in enumerate(kind)}
        self.load_weights(weights)

    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Take the tensors (names as in docs/architecture.md), cast to each
        parameter's dtype and moved to the model's device."""
        expected = self.state_dict(keep_vars=True)
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise KeyError(f"weights are missing {len(missing)} tensors, e.g. {missing[:3]}")
        converted = {name: weights[name].to(device=self.device, dtype=p.dtype)
                     for name, p in expected.items()}
        self.load_state_dict(converted, assign=True, strict=True)

    def new_state(self, max_seq_len: int) -> SequenceState:
        return SequenceState.empty(self.config, max_seq_len, self.dtype, self.device)

    @torch.inference_mode()
    def forward(self, token_ids, state: SequenceState, all_logits: bool = False,
                recurrent: bool = False) -> Tensor:
        """Run tokens [T] through the model, advancing ``state``; return float32
        logits for every position [T, vocab] or, by default, the last [vocab]."""
        tokens = torch.as_tensor(token_ids, dtype=torch.long, device=self.device).reshape(-1)
        state.check_room(tokens.numel())
        x = self.embed_tokens(tokens)
        for i, layer in enumerate(self.layers):
            slot = self.state_slot[i]
            h = layer.input_layernorm(x)
            if layer.is_deltanet:
                h = layer.linear_attn(h, state.conv_state[slot], state.deltanet_state[slot], recurrent)
            else:
                h = layer.self_attn(h, state.k_cache[slot], state.v_cache[slot], state.position)
            x = x + h
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        state.position += tokens.numel()
        x = self.norm(x if all_logits else x[-1:])
        logits = (x @ self.embed_tokens.weight.T).float()
        return logits if all_logits else logits[-1]

    def prefill(self, token_ids, state: SequenceState) -> Tensor:
        return self.forward(token_ids, state)

    def decode(self, token_id: int, state: SequenceState) -> Tensor:
        return self.forward([token_id], state, recurrent=True)
