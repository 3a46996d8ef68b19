"""How the read ceiling's trials spread within and between processes: every
trial of megadelta.bench.roofline's read (10 sums over 2 GiB) recorded, 30 a
process, and what best-of-5 (the benchmark's method) gives against best-of-30.
One JSON line per process."""
import json
import sys

import torch

from megadelta.bench import roofline
from megadelta.bench.timing import timed

setup = roofline.GPU_SETUP
device = torch.device("cuda")
x = torch.randn(setup.bandwidth_bytes // 4, dtype=torch.float32, device=device)


def trial() -> None:
    for _ in range(setup.reads_per_trial):
        x.sum()


trial()
gbs = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
    seconds = timed(device, trial)[1]
    gbs.append(x.numel() * 4 * setup.reads_per_trial / seconds / 1e9)
print(json.dumps({"trials_gbs": [round(g, 1) for g in gbs], "best_of_5": round(max(gbs[:5]), 1),
                  "best_of_all": round(max(gbs), 1), "median": round(sorted(gbs)[len(gbs) // 2], 1)}))
