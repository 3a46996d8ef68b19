"""Per-sequence decoding state, shared by every backend.

One ``SequenceState`` holds everything a sequence carries from one step to the
next. Layers of one kind are stacked along the first axis, in layer order, so a
CUDA kernel gets one pointer per kind of state:

* ``conv_state``     [n_deltanet, conv_dim, kernel-1] float32: the last
  ``kernel-1`` conv inputs of every q|k|v channel (oldest first).
* ``deltanet_state`` [n_deltanet, value_heads, key_dim, value_dim] float32:
  the gated-delta-rule memory S of every DeltaNet layer (o = S^T q).
* ``k_cache``, ``v_cache`` [n_attention, kv_heads, max_seq_len, head_dim] in
  the model dtype: keys (after q/k norm and RoPE) and values of every position
  seen so far; only the first ``position`` slots are valid.
* ``position``: number of tokens consumed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .config import ModelConfig


class ContextLengthError(ValueError):
    """A request that would not fit in the sequence's context window."""


@dataclass
class SequenceState:
    conv_state: torch.Tensor
    deltanet_state: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    position: int = 0

    TENSORS = ("conv_state", "deltanet_state", "k_cache", "v_cache")   # the fields above, by name

    @classmethod
    def empty(cls, config: ModelConfig, max_seq_len: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> "SequenceState":
        return cls(**{name: torch.zeros(shape, dtype=t, device=device)
                      for name, (shape, t) in _layout(config, max_seq_len, dtype).items()})

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def check_room(self, n_new: int) -> None:
        """Raise a clear error if ``n_new`` more tokens would overflow the context."""
        if self.position + n_new > self.max_seq_len:
            raise ContextLengthError(
                f"{self.position + n_new} tokens ({self.position} in context + {n_new} new) "
                f"exceed the context limit of {self.max_seq_len} tokens")

    def check_layout(self, config: ModelConfig, dtype: torch.dtype, device: torch.device, user: str,
                     contiguous: bool = False) -> None:
        """Raise a clear error unless every tensor has the shape and dtype that
        ``empty(config, self.max_seq_len, dtype)`` gives, lives on ``device`` and,
        if asked, is contiguous; ``user`` names what needs it, for the message."""
        # (checked before every prefill and decode call: no tensors are made here)
        for name, (shape, e_dtype) in _layout(config, self.max_seq_len, dtype).items():
            t = getattr(self, name)
            if (t.shape != shape or t.dtype != e_dtype or t.device != device
                    or (contiguous and not t.is_contiguous())):
                raise ValueError(f"state.{name} is {tuple(t.shape)} {t.dtype} on {t.device}; {user} needs "
                                 f"{'a contiguous ' if contiguous else ''}{shape} {e_dtype} on {device}")

    def reset(self) -> None:
        """Forget the sequence; buffers are reused, so no allocation."""
        for name in self.TENSORS:
            getattr(self, name).zero_()
        self.position = 0

    def copy_from(self, other: SequenceState) -> None:
        """Take ``other``'s contents and position in place (converting dtype and
        device: e.g. a float32 reference's state handed to a bf16 backend)."""
        for name in self.TENSORS:
            getattr(self, name).copy_(getattr(other, name))
        self.position = other.position

    def clone(self) -> "SequenceState":
        return SequenceState(self.conv_state.clone(), self.deltanet_state.clone(),
                             self.k_cache.clone(), self.v_cache.clone(), self.position)


@functools.lru_cache(maxsize=32)
def _layout(config: ModelConfig, max_seq_len: int, dtype: torch.dtype) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Each state tensor's (shape, dtype), in SequenceState.TENSORS order."""
    n_dn, n_att = len(config.deltanet_layers), len(config.attention_layers)
    kv_shape = (n_att, config.num_key_value_heads, max_seq_len, config.head_dim)
    return {
        "conv_state": ((n_dn, config.conv_dim, config.conv_state_len), torch.float32),
        "deltanet_state": ((n_dn, config.linear_num_value_heads, config.linear_key_head_dim,
                            config.linear_value_head_dim), torch.float32),
        "k_cache": (kv_shape, dtype),
        "v_cache": (kv_shape, dtype),
    }
