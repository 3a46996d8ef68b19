"""Probe 2: is a placement's tg128 repeatable? Keeps 5 placements of the tagged
scratch words and 4 of the whole KernelBuffers (packed weights too), and times
each in turn, round after round, in one process. If each placement keeps its
own speed round after round, where the buffers lie decides the ~1.5% between
processes; if not, it is noise. JSON to argv[1]."""
import json
import statistics
import sys

import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels.timing import greedy_seconds
from megadelta.megakernel import KernelBuffers, MegakernelBackend

ROUNDS = 4
dev = torch.device("cuda")
weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference")
base = b.buffers
scratches = [base.scratch] + [{k: v.clone() for k, v in base.scratch.items()} for _ in range(4)]
buffers = [base] + [KernelBuffers(QWEN35_0_8B, weights, dev, b.grid) for _ in range(3)]
out = {"scratch": [[] for _ in scratches], "buffers": [[] for _ in buffers]}
for r in range(ROUNDS):
    for i, sc in enumerate(scratches):
        b.buffers = base
        base.scratch = sc
        out["scratch"][i].append(128 / greedy_seconds(b, 0, 128, 5))
    base.scratch = scratches[0]
    for i, bu in enumerate(buffers):
        b.buffers = bu
        out["buffers"][i].append(128 / greedy_seconds(b, 0, 128, 5))
for kind, rows in out.items():
    for i, row in enumerate(rows):
        print(f"{kind:8s} {i}: " + " ".join(f"{v:7.1f}" for v in row) + f"   median {statistics.median(row):7.1f}")
json.dump(out, open(sys.argv[1], "w"), indent=1)
