"""Probe 3: which tagged buffer's placement carries the ~2.5% between
placements of the scratch words, and can a short trial rank placements?
One process: 10 placements of the scratch, each timed with long trials (128
steps, median of 5) and short ones (32 steps, median of 3), two rounds; then,
from the slowest placement, each buffer in turn taken from the fastest. JSON
to argv[1]."""
import json
import statistics
import sys

import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels.timing import greedy_seconds
from megadelta.megakernel import MegakernelBackend

dev = torch.device("cuda")
weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference")
base = b.buffers.scratch
sets = [base] + [{k: v.clone() for k, v in base.items()} for _ in range(9)]


def tok_s(scratch, n=128, reps=5):
    b.buffers.scratch = scratch
    return n / greedy_seconds(b, 0, n, reps)


long = [[tok_s(s) for _ in range(2)] for s in sets]
short = [[tok_s(s, 32, 3) for _ in range(2)] for s in sets]
for i in range(len(sets)):
    print(f"placement {i}: long {long[i][0]:7.1f} {long[i][1]:7.1f}   short {short[i][0]:7.1f} {short[i][1]:7.1f}")
med = [statistics.median(x) for x in long]
slow, fast = med.index(min(med)), med.index(max(med))
swaps = {}
for name in ("x", "x_mid", "h", "proj", "mixer_out", "attn_partial"):
    mixed = dict(sets[slow], **{name: sets[fast][name]})
    swaps[name] = [tok_s(mixed) for _ in range(2)]
    print(f"slow {slow} with fast {fast}'s {name:12s}: {swaps[name][0]:7.1f} {swaps[name][1]:7.1f}")
print(f"slow {slow}: {[round(tok_s(sets[slow]), 1) for _ in range(2)]}  fast {fast}: {[round(tok_s(sets[fast]), 1) for _ in range(2)]}")
json.dump({"long": long, "short": short, "slow": slow, "fast": fast, "swaps": swaps}, open(sys.argv[1], "w"), indent=1)
