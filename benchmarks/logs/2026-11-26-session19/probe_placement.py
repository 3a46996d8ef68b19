"""Probe: does where the buffers lie decide whether a process runs tg128 at
~1,556 or ~1,575 tok/s? In one process: time tg128 after each new placement of
(a) the tagged scratch words only, (b) the sequence state only, (c) the whole
KernelBuffers (packed weights too), keeping the old allocations alive so that
every placement is new. Prints one line per trial; JSON to argv[1]."""
import json
import sys

import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels.timing import greedy_seconds
from megadelta.megakernel import KernelBuffers, MegakernelBackend

dev = torch.device("cuda")
weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference")
keep, out = [], []


def trial(kind):
    s = greedy_seconds(b, 0, 128, 5)
    ptrs = {k: hex(v.data_ptr()) for k, v in b.buffers.scratch.items() if k in ("x", "x_mid", "h", "mixer_out", "proj")}
    rec = {"kind": kind, "tok_s": 128 / s, "scratch": ptrs, "embed": hex(b.buffers.globals["embed"].data_ptr())}
    out.append(rec)
    print(f"{kind:8s} {128 / s:8.1f}  x {ptrs['x']}  embed {rec['embed']}", flush=True)


for i in range(3):
    trial("same")
for i in range(12):
    keep.append(b.buffers.scratch)
    b.buffers.scratch = {k: v.clone() for k, v in b.buffers.scratch.items()}
    trial("scratch")
# The state: greedy_seconds allocates a new one per call; hold some to move it.
for i in range(6):
    keep.append(torch.empty(1 << 20 << i % 3, dtype=torch.uint8, device=dev))
    trial("state")
for i in range(6):
    keep.append(b.buffers)
    b.buffers = KernelBuffers(QWEN35_0_8B, weights, dev, b.grid)
    trial("weights")
json.dump(out, open(sys.argv[1], "w"), indent=1)
