"""Probe 4 (for the next session; not run yet): does x_mid's speed follow its
offset inside a 2 MB segment (address bits the L2's slice hash might take) or
the segment itself (its physical pages)? One process: x_mid placed at 16
offsets (every 128 KB) in each of 4 segments of 2 MB, each placement timed by
the backend's own short trial (three 32-step launches, the least), two rounds.
Prints a segments x offsets grid of tok/s; JSON to argv[1].
    PYTHONPATH=$PWD python3 benchmarks/logs/2026-11-26-session19/probe_placement_grid.py out.json
"""
import json
import sys

import torch

from megadelta.bench.timing import timed
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.megakernel import PLACEMENT_TRIAL_STEPS, MegakernelBackend

SEGMENTS, OFFSETS, ROUNDS = 4, 16, 2
weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference", placement_candidates=1)
scratch = b.buffers.scratch
words = scratch["x_mid"].numel()
segments = [torch.zeros((2 << 20) // 8, dtype=torch.int64, device="cuda") for _ in range(SEGMENTS)]
step = (segments[0].numel() - words) // OFFSETS // 16 * 16
state = b.new_state(PLACEMENT_TRIAL_STEPS + 1)


def launch():
    b._launch(1, state, PLACEMENT_TRIAL_STEPS, logits=False, publish=False)


grid = [[[] for _ in range(OFFSETS)] for _ in range(SEGMENTS)]
for _ in range(ROUNDS):
    for s, seg in enumerate(segments):
        for o in range(OFFSETS):
            scratch["x_mid"] = seg[o * step:o * step + words]
            launch()
            grid[s][o].append(PLACEMENT_TRIAL_STEPS / min(timed(b.device, launch)[1] for _ in range(3)))
for s in range(SEGMENTS):
    print(f"segment {s} {hex(segments[s].data_ptr())}: " + " ".join(f"{max(v):6.0f}" for v in grid[s]))
json.dump({"offset_step_bytes": step * 8, "segments": [hex(t.data_ptr()) for t in segments], "tok_s": grid},
          open(sys.argv[1], "w"), indent=1)
