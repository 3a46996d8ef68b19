"""Why did the benchmark's tg128 run 0.7% below a standalone decode_greedy on
the same machine (session 28, call 1)? One way of loading per process:

  standalone   MegakernelBackend on random_weights made on the GPU (the probes' and ab_tg128's way)
  engine       Engine.load of the embedded checkpoint (the benchmark's way), fast prefill
  engine-ref   the same with the reference prefill instead of the fast one

Each then times decode_greedy of 128 tokens from position 0 on a state of
8,193 positions as the benchmark does (2 warm-ups, then reset + synchronise +
timed run, 10 times) and prints the median.
"""
from __future__ import annotations

import statistics
import sys

import torch

from megadelta.bench.timing import synchronize, timed

mode = sys.argv[1]
dev = torch.device("cuda")
if mode == "standalone":
    from megadelta.checkpoint import random_weights
    from megadelta.config import QWEN35_0_8B
    from megadelta.megakernel import MegakernelBackend

    backend = MegakernelBackend(QWEN35_0_8B, random_weights(QWEN35_0_8B, seed=0, confident=True, device=dev), dev,
                                prefill="reference")
    state = backend.new_state(8193)
else:
    from megadelta import engine

    if mode == "engine-ref":
        import megadelta.megakernel as mk

        original = mk.make_prefill
        mk.make_prefill = lambda config, weights, device, kind: original(config, weights, device, "reference")
    e = engine.Engine.load(backend="megakernel", device=dev, max_seq_len=8193)
    backend, state = e.backend, e.state


def run() -> int:
    return len(list(backend.decode_greedy(1, state, 128, set())))


for _ in range(2):
    state.reset()
    run()
seconds = []
for _ in range(10):
    state.reset()
    synchronize(dev)
    n, s = timed(dev, run)
    assert n == 128
    seconds.append(s)
print(f"{mode}: tg128 {128 / statistics.median(seconds):.1f} tok/s (runs {', '.join(f'{128 / s:.0f}' for s in seconds)})")
