"""CUDA graphs of whole prefills from an empty context.

A prefill launches a few hundred kernels; replaying them from a graph removes
the launch gaps, which at a few hundred tokens are a large share of the time.

One graph per prompt length (the buckets are exact lengths): padding a prompt
to a bucket would cost compute and need every stage to mask the padded tokens
out of the state. A length is captured the second time it is seen, so a
one-off prompt never pays for a capture; beyond ``max_graphs`` the least
recently used graph is dropped.

A graph runs on buffers of its own (token ids, a ``SequenceState`` sized to the
prompt); the caller's conv and DeltaNet states are copied in before a replay
and, with the new keys and values, copied back after it, so any
``SequenceState`` at position 0 can use any graph.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Callable

import torch
from torch import Tensor

from ..config import ModelConfig
from ..state import SequenceState

log = logging.getLogger(__name__)

Forward = Callable[[Tensor, SequenceState, bool], Tensor]


class CapturedPrefill:
    def __init__(self, forward: Forward, config: ModelConfig, dtype: torch.dtype, device: torch.device,
                 seq_len: int, pool):
        self.tokens = torch.zeros(seq_len, dtype=torch.long, device=device)
        self.state = SequenceState.empty(config, seq_len, dtype, device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):   # warm-up: Triton compiles, cuBLAS picks its kernels
            forward(self.tokens, self.state, False)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.logits = forward(self.tokens, self.state, False)

    def replay(self, tokens: Tensor, state: SequenceState) -> Tensor:
        seq_len = self.tokens.numel()
        own = self.state
        self.tokens.copy_(tokens)
        own.conv_state.copy_(state.conv_state)
        own.deltanet_state.copy_(state.deltanet_state)
        self.graph.replay()
        state.conv_state.copy_(own.conv_state)
        state.deltanet_state.copy_(own.deltanet_state)
        state.k_cache[:, :, :seq_len].copy_(own.k_cache)
        state.v_cache[:, :, :seq_len].copy_(own.v_cache)
        return self.logits.clone()


class PrefillGraphs:
    def __init__(self, forward: Forward, config: ModelConfig, dtype: torch.dtype, device: torch.device,
                 max_len: int, max_graphs: int = 8):
        self.forward, self.config, self.dtype, self.device = forward, config, dtype, device
        self.max_len, self.max_graphs = max_len, max_graphs
        self.pool = torch.cuda.graph_pool_handle()
        self.seen: Counter[int] = Counter()
        self.graphs: OrderedDict[int, CapturedPrefill] = OrderedDict()
        self.failed = False     # a capture failed: run everything eagerly from then on

    def run(self, tokens: Tensor, state: SequenceState) -> Tensor | None:
        """Logits of a prefill from position 0 by graph replay, or None when this
        length has no graph (yet): the caller then runs the prefill eagerly.
        Does not advance ``state.position``."""
        seq_len = tokens.numel()
        if seq_len > self.max_len or self.failed:
            return None
        graph = self.graphs.get(seq_len)
        if graph is None:
            self.seen[seq_len] += 1
            if self.seen[seq_len] < 2:
                return None
            if len(self.graphs) >= self.max_graphs:
                self.graphs.popitem(last=False)
            try:
                graph = CapturedPrefill(self.forward, self.config, self.dtype, self.device, seq_len, self.pool)
            except RuntimeError as e:
                # Slower, still correct: the state is untouched, the caller runs eagerly.
                log.warning("CUDA graph capture of a %d-token prefill failed (%s); prefill runs eagerly",
                            seq_len, e)
                self.failed = True
                return None
            self.graphs[seq_len] = graph
        self.graphs.move_to_end(seq_len)
        return graph.replay(tokens, state)
