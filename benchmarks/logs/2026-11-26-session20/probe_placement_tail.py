"""Probe 5: how good a placement of x_mid (then x) can a larger search find,
and do short trials (three 32-step launches, the least) find it? One process:
x_mid in each of SEGMENTS 2 MB segments (spread offsets, as placed_copy),
short trials in two rounds; the best SHORTLIST by short trial then timed with
long trials (tg128, median of 5) twice. Then x the same way with the best
x_mid kept. JSON to argv[1].
    PYTHONPATH=$PWD python3 benchmarks/logs/2026-11-26-session20/probe_placement_tail.py out.json
"""
import json
import sys

from megadelta.bench.timing import timed
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels.timing import greedy_seconds
from megadelta.megakernel import PLACEMENT_TRIAL_STEPS, MegakernelBackend, placed_copy

SEGMENTS, SHORTLIST = 32, 6
weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference", placement_candidates=1)
scratch = b.buffers.scratch
state = b.new_state(PLACEMENT_TRIAL_STEPS + 1)


def launch():
    b._launch(1, state, PLACEMENT_TRIAL_STEPS, logits=False, publish=False)


def short(n=3):
    launch()
    return PLACEMENT_TRIAL_STEPS / min(timed(b.device, launch)[1] for _ in range(n))


def search(name, segments):
    original = scratch[name]
    placements = [original] + [placed_copy(original, k, segments) for k in range(1, segments)]
    shorts = []
    for _ in range(2):
        row = []
        for v in placements:
            scratch[name] = v
            row.append(short())
        shorts.append(row)
    best_short = [max(a, c) for a, c in zip(*shorts)]
    order = sorted(range(segments), key=lambda i: -best_short[i])
    longs = {}
    for i in order[:SHORTLIST] + [order[-1], 0]:
        scratch[name] = placements[i]
        longs[i] = [128 / greedy_seconds(b, 0, 128, 5) for _ in range(2)]
    best = max(longs, key=lambda i: sum(longs[i]))
    scratch[name] = placements[best]
    print(f"{name}: short " + " ".join(f"{s:.0f}" for s in best_short))
    for i, v in longs.items():
        print(f"{name} placement {i}: short {best_short[i]:.0f} long {v[0]:.1f} {v[1]:.1f}")
    return {"short": shorts, "long": longs, "best": best, "kept_placements": placements}


result = {}
for name, n in (("x_mid", SEGMENTS), ("x", 16)):
    r = search(name, n)
    r.pop("kept_placements")
    result[name] = r
json.dump(result, open(sys.argv[1], "w"), indent=1)
