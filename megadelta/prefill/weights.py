"""The prefill's weights: projections that read the same input fused into one
matrix, so each runs as one large GEMM.

* DeltaNet: q|k|v|z|b|a in one [conv_dim + value_dim + 2*heads, hidden] matrix,
* attention: q(+gate)|k|v in one [2*q_size + 2*kv_size, hidden] matrix,
* MLP: gate|up in one [2*intermediate, hidden] matrix.

Matrices are kept in the compute dtype; norms, the conv taps, A_log and dt_bias
in float32 (they are applied in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import DELTANET, ModelConfig


@dataclass
class DeltaNetWeights:
    in_proj: Tensor        # [conv_dim + value_dim + 2*Hv, hidden]: q | k | v | z | b | a
    conv: Tensor           # [conv_dim, kernel] float32
    a_log: Tensor          # [Hv] float32
    dt_bias: Tensor        # [Hv] float32
    norm: Tensor           # [Dv] float32 (plain scale, not zero-centred)
    out_proj: Tensor       # [hidden, value_dim]


@dataclass
class AttentionWeights:
    in_proj: Tensor        # [2*q_size + 2*kv_size, hidden]: (query|gate per head) | k | v
    q_norm: Tensor         # [head_dim] float32 (zero-centred)
    k_norm: Tensor
    out_proj: Tensor       # [hidden, q_size]


@dataclass
class LayerWeights:
    mixer: DeltaNetWeights | AttentionWeights
    input_norm: Tensor     # [hidden] float32 (zero-centred)
    post_norm: Tensor
    gate_up: Tensor        # [2*intermediate, hidden]
    down: Tensor           # [hidden, intermediate]

    @property
    def is_deltanet(self) -> bool:
        return isinstance(self.mixer, DeltaNetWeights)


@dataclass
class PrefillWeights:
    embed: Tensor          # [vocab, hidden], also the (tied) output projection
    final_norm: Tensor
    layers: list[LayerWeights]


def fuse_weights(config: ModelConfig, weights: dict[str, Tensor], dtype: torch.dtype,
                 device: torch.device) -> PrefillWeights:
    """Build the fused weights from a state dict named as in docs/architecture.md."""
    def get(name: str, as_dtype: torch.dtype = dtype) -> Tensor:
        if name not in weights:
            raise KeyError(f"weights are missing {name!r} (names as in a Qwen3_5ForCausalLM state "
                           f"dict without the 'model.' prefix)")
        return weights[name].to(device=device, dtype=as_dtype).contiguous()

    def fused(prefix: str, names: list[str]) -> Tensor:
        return torch.cat([get(f"{prefix}.{n}.weight") for n in names], dim=0).contiguous()

    f32 = torch.float32
    layers = []
    for i, kind in enumerate(config.layer_types):
        p = f"layers.{i}"
        if kind == DELTANET:
            la = f"{p}.linear_attn"
            mixer = DeltaNetWeights(
                in_proj=fused(la, ["in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"]),
                conv=get(f"{la}.conv1d.weight", f32)[:, 0].contiguous(),
                a_log=get(f"{la}.A_log", f32), dt_bias=get(f"{la}.dt_bias", f32),
                norm=get(f"{la}.norm.weight", f32), out_proj=get(f"{la}.out_proj.weight"))
        else:
            sa = f"{p}.self_attn"
            mixer = AttentionWeights(
                in_proj=fused(sa, ["q_proj", "k_proj", "v_proj"]),
                q_norm=get(f"{sa}.q_norm.weight", f32), k_norm=get(f"{sa}.k_norm.weight", f32),
                out_proj=get(f"{sa}.o_proj.weight"))
        layers.append(LayerWeights(
            mixer=mixer,
            input_norm=get(f"{p}.input_layernorm.weight", f32),
            post_norm=get(f"{p}.post_attention_layernorm.weight", f32),
            gate_up=fused(f"{p}.mlp", ["gate_proj", "up_proj"]),
            down=get(f"{p}.mlp.down_proj.weight")))
    return PrefillWeights(embed=get("embed_tokens.weight"), final_norm=get("norm.weight", f32),
                          layers=layers)
