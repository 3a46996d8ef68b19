"""Probe 7 (for the next session; not run yet): probe 6 (b) found that the
DeltaNet state's placement moves the step by as much as x_mid's (1,570-1,596
at 32 KB steps). Which address bits? One process, the backend's own placement
of x_mid and x kept, short trials (three 32-step launches, the least; two
rounds, the better kept):
  a. the DeltaNet state at 64 offsets 1 KB apart (a head's tile is 64 KB);
  b. at 64 offsets 128 B apart (one 8 KB block, line by line);
  c. the conv state at 32 offsets 1 KB apart.
If a period shows (as x_mid's 8 KB one), new_state can allocate the state at
its best offset. JSON to argv[1].
    PYTHONPATH=$PWD python3 benchmarks/logs/2026-11-26-session20/probe_state_bits.py out.json
"""
import json
import statistics
import sys

import torch

from megadelta.bench.timing import best_trial_seconds
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.megakernel import PLACEMENT_TRIAL_STEPS, MegakernelBackend

weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference")
state = b.new_state(PLACEMENT_TRIAL_STEPS + 1)
SEG = 2 << 20


def short():
    def launch():
        b._launch(1, state, PLACEMENT_TRIAL_STEPS, logits=False, publish=False)
    return PLACEMENT_TRIAL_STEPS / best_trial_seconds(b.device, launch, 3)


def scan(name, offsets):
    tensor = getattr(state, name)
    big = torch.zeros((tensor.nbytes + SEG) // tensor.element_size(), dtype=tensor.dtype, device="cuda")
    base = big.data_ptr()
    rows = []
    for _ in range(2):
        row = []
        for o in offsets:
            view = big[o // tensor.element_size():][:tensor.numel()].view(tensor.shape)
            view.copy_(tensor)
            setattr(state, name, view)
            row.append(round(short(), 1))
        rows.append(row)
    best = [max(x, y) for x, y in zip(*rows)]
    print(f"{name} from {hex(base)} (mod 2 MB {base % SEG}), offsets {offsets[0]}..{offsets[-1]}: {best}")
    print(f"  min {min(best)} median {statistics.median(best)} max {max(best)}")
    return {"base": base, "offsets": offsets, "tok_s": best}


out = {"x_mid": b.buffers.scratch["x_mid"].data_ptr(), "x": b.buffers.scratch["x"].data_ptr(),
       "a": scan("deltanet_state", [k * 1024 for k in range(64)]),
       "b": scan("deltanet_state", [k * 128 for k in range(64)]),
       "c": scan("conv_state", [k * 1024 for k in range(32)])}
json.dump(out, open(sys.argv[1], "w"), indent=1)
