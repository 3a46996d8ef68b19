"""Does the KV cache's capacity (max_seq_len) move tg128? (session 28, call 2)

Call 1 put the benchmark's tg128 (engine state sized for pp8192: 8,193
positions) 0.7% below the same machine's standalone decode_greedy on a
130-position state. One process, random 0.8B weights: decode_greedy of 128
tokens from position 0 on states of several capacities, taken in turn round
after round, timed as the benchmark times it; then the kernel alone (events
around the launch) with and without publishing tokens, on the small state.
"""
from __future__ import annotations

import json
import statistics
import sys

import torch

from megadelta.bench.timing import timed
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels.codegen import BLOCK_THREADS
from megadelta.megakernel import MegakernelBackend, _ptr

CAPACITIES = [int(c) for c in sys.argv[1].split(",")] if len(sys.argv) > 1 else [130, 1024, 8193, 32897]
ROUNDS = 8
dev = torch.device("cuda")
backend = MegakernelBackend(QWEN35_0_8B, random_weights(QWEN35_0_8B, seed=0, device=dev), dev, prefill="reference")
stream = torch.cuda.current_stream(dev)
states = {c: backend.new_state(c) for c in CAPACITIES}


def greedy_seconds(state) -> float:
    state.reset()
    torch.cuda.synchronize()
    return timed(dev, lambda: list(backend.decode_greedy(1, state, 128, set())))[1]


def kernel_seconds(state, publish: bool) -> float:
    state.reset()
    b = backend
    args = b.buffers.params(state, 1, 128, barrier=_ptr(b.barrier), progress=b.progress.device_ptr,
                            tokens_out=b.tokens.device_ptr if publish else 0, logits=False,
                            shared_bytes=b.shared_bytes)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    b.kernel.launch_cooperative(b.grid, BLOCK_THREADS, b.shared_bytes, stream.cuda_stream, args)
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / 1e3


for c in CAPACITIES:
    greedy_seconds(states[c])
greedy = {c: [] for c in CAPACITIES}
for _ in range(ROUNDS):
    for c in CAPACITIES:
        greedy[c].append(greedy_seconds(states[c]))
small = states[CAPACITIES[0]]
kernel = {"publish": [], "no_publish": []}
for _ in range(ROUNDS):
    kernel["publish"].append(kernel_seconds(small, True))
    kernel["no_publish"].append(kernel_seconds(small, False))
print(json.dumps({"greedy": greedy, "kernel": kernel}))
summary = {f"greedy tok/s, capacity {c}": 128 / statistics.median(v) for c, v in greedy.items()}
summary |= {f"kernel alone tok/s, {k}": 128 / statistics.median(v) for k, v in kernel.items()}
print(json.dumps(summary, indent=1))
