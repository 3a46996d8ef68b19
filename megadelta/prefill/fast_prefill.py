"""FastPrefill: a prompt through the model at GEMM speed, leaving exactly the
state that decode needs.

Per layer: one fused input projection (a large bf16 GEMM on tensor cores), the
mixer (the chunked gated delta rule or causal GQA attention), one output
projection and the MLP (gate|up GEMM, fused SiLU*up, down GEMM). Norms and
residual adds are fused into one kernel per norm; the residual stream stays in
float32. Unless all logits are asked for, the last layer computes for every
position only what the state needs (its input projection, and the delta rule
or the keys and values); its queries, attention, output projection and MLP
run for the last position only.

The final conv inputs, DeltaNet states and bf16 keys/values are written into
the caller's ``SequenceState`` in place, and ``position`` advances, so decode
(the reference model or the megakernel) continues from it. Prompts longer
than ``max_piece`` tokens run in pieces, each continuing the state, so
activation memory stays bounded.

On CUDA the stages are Triton kernels (``triton_ops``) and prefills from an
empty context are replayed from CUDA graphs (``graphs``); on the CPU the same
stages run in plain PyTorch (``torch_ops``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.bias import causal_lower_right

from ..config import ModelConfig
from ..state import SequenceState
from . import torch_ops
from .weights import AttentionWeights, DeltaNetWeights, fuse_weights

MAX_PIECE = 8192


class FastPrefill:
    def __init__(self, config: ModelConfig, weights: dict[str, Tensor], device: torch.device | str = "cuda",
                 dtype: torch.dtype = torch.bfloat16, *, use_triton: bool | None = None,
                 use_graphs: bool | None = None, max_piece: int = MAX_PIECE):
        """``use_triton`` and ``use_graphs`` default to on for CUDA devices."""
        self.config, self.dtype, self.max_piece = config, dtype, max_piece
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        on_gpu = self.device.type == "cuda"
        if use_triton if use_triton is not None else on_gpu:
            from . import triton_ops
            self.ops = triton_ops
        else:
            self.ops = torch_ops
        self.weights = fuse_weights(config, weights, dtype, self.device)
        rd = config.rotary_dim
        self.inv_freq = 1.0 / config.rope_theta ** (
            torch.arange(0, rd, 2, dtype=torch.float32, device=self.device) / rd)
        self.graphs = None
        if use_graphs if use_graphs is not None else on_gpu:
            from .graphs import PrefillGraphs
            self.graphs = PrefillGraphs(self._forward, config, dtype, self.device, max_len=max_piece)

    @torch.inference_mode()
    def prefill(self, token_ids: Sequence[int] | Tensor, state: SequenceState,
                all_logits: bool = False) -> Tensor:
        """Consume ``token_ids`` on top of ``state`` (empty or not); return float32
        logits of the last position [vocab], or of every position [T, vocab]."""
        tokens = self._device_tokens(token_ids)
        self._check_state(state)
        state.check_room(tokens.numel())
        logits = []
        for piece in tokens.split(self.max_piece):
            out = None
            if self.graphs is not None and state.position == 0 and not all_logits:
                out = self.graphs.run(piece, state)
            if out is None:
                out = self._forward(piece, state, all_logits)
            state.position += piece.numel()
            logits.append(out)
        return torch.cat(logits) if all_logits else logits[-1]

    # ---- the model --------------------------------------------------------

    def _forward(self, tokens: Tensor, state: SequenceState, all_logits: bool) -> Tensor:
        """The forward pass from ``state.position`` on; writes the state but does
        not advance ``position``. Graph-capturable: no host syncs, no host tensors."""
        w, ops, eps = self.weights, self.ops, self.config.rms_norm_eps
        start = state.position
        positions = torch.arange(start, start + tokens.numel(), device=self.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq
        cos, sin = angles.cos(), angles.sin()
        x = F.embedding(tokens, w.embed).float()
        delta = None
        slots = {True: 0, False: 0}     # next state slot of each layer kind
        for index, layer in enumerate(w.layers):
            h = ops.add_rmsnorm(x, delta, layer.input_norm, eps, self.dtype)
            slot = slots[layer.is_deltanet]
            slots[layer.is_deltanet] += 1
            # Past the last layer's mixer only the last position reaches the
            # logits (its state is written for every position all the same).
            out_rows = 1 if not all_logits and index == len(w.layers) - 1 else tokens.numel()
            if layer.is_deltanet:
                delta = self._deltanet(layer.mixer, h, state, slot, out_rows)
            else:
                delta = self._attention(layer.mixer, h, state, slot, start, cos, sin, out_rows)
            x = x[-out_rows:]
            h = ops.add_rmsnorm(x, delta, layer.post_norm, eps, self.dtype)
            delta = F.linear(ops.silu_mul(F.linear(h, layer.gate_up)), layer.down)
        logits = F.linear(ops.add_rmsnorm(x, delta, w.final_norm, eps, self.dtype), w.embed).float()
        return logits if all_logits else logits[0]

    # The mixers write the state of every position and return the output of the last `out_rows`.

    def _deltanet(self, m: DeltaNetWeights, h: Tensor, state: SequenceState, slot: int, out_rows: int) -> Tensor:
        c = self.config
        proj = F.linear(h, m.in_proj)
        o = self.ops.deltanet(proj, state.conv_state[slot], state.deltanet_state[slot], m, c)[-out_rows:]
        z = proj[-out_rows:, c.conv_dim:c.conv_dim + c.value_dim]
        return F.linear(self.ops.gated_rmsnorm(o, z, m.norm, c.rms_norm_eps, self.dtype), m.out_proj)

    def _attention(self, m: AttentionWeights, h: Tensor, state: SequenceState, slot: int, start: int,
                   cos: Tensor, sin: Tensor, out_rows: int) -> Tensor:
        c, seq_len = self.config, h.shape[0]
        heads, kv_heads, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        end = start + seq_len
        proj = F.linear(h, m.in_proj)
        query_gate = proj[-out_rows:, :2 * c.q_size].view(out_rows, heads, 2 * d)
        q = torch.empty(heads, out_rows, d, dtype=self.dtype, device=self.device)
        self.ops.qk_norm_rope(query_gate[..., :d], m.q_norm, c.rms_norm_eps, cos[-out_rows:], sin[-out_rows:], q)
        k_cache, v_cache = state.k_cache[slot], state.v_cache[slot]
        k_new = proj[:, 2 * c.q_size:2 * c.q_size + c.kv_size].view(seq_len, kv_heads, d)
        self.ops.qk_norm_rope(k_new, m.k_norm, c.rms_norm_eps, cos, sin, k_cache[:, start:end])
        v_new = proj[:, 2 * c.q_size + c.kv_size:].view(seq_len, kv_heads, d)
        v_cache[:, start:end].copy_(v_new.transpose(0, 1))
        out = causal_attention(q, k_cache[:, :end], v_cache[:, :end])
        gated = out.transpose(0, 1) * torch.sigmoid(query_gate[..., d:])
        return F.linear(gated.reshape(out_rows, c.q_size), m.out_proj)

    # ---- inputs -----------------------------------------------------------

    def _device_tokens(self, token_ids: Sequence[int] | Tensor) -> Tensor:
        tokens = torch.as_tensor(token_ids if isinstance(token_ids, Tensor) else list(token_ids),
                                 dtype=torch.long).reshape(-1)
        if tokens.numel() == 0:
            raise ValueError("prefill needs at least one token")
        if tokens.device.type == "cpu":
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(f"token id {lo if lo < 0 else hi} is outside the vocabulary "
                                 f"[0, {self.config.vocab_size})")
            if self.device.type == "cuda":
                # pinned + non_blocking: the copy does not wait for the device
                return tokens.pin_memory().to(self.device, non_blocking=True)
        return tokens.to(self.device)

    def _check_state(self, state: SequenceState) -> None:
        state.check_layout(self.config, self.dtype, self.device, "this prefill")


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal GQA attention of q [H, T, D] over k, v [Hkv, S, D] (S >= T, the last
    T keys belong to the queries): query t sees keys 0 .. S-T+t."""
    heads, seq_len = q.shape[:2]
    kv_heads, context = k.shape[:2]
    if context == seq_len or seq_len == 1:   # top-left aligned, or one query that sees every key
        return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=seq_len > 1,
                                              enable_gqa=heads != kv_heads)[0]
    # Continuing a context: bottom-right aligned causal mask; SDPA's is_causal is top-left.
    k, v = (t.repeat_interleave(heads // kv_heads, dim=0) for t in (k, v))
    return F.scaled_dot_product_attention(q[None], k[None], v[None],
                                          attn_mask=causal_lower_right(seq_len, context))[0]
