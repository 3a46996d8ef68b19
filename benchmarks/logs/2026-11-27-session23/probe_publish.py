"""Probe: what publishing each greedy token to host-mapped memory costs a step.

One build, one process: 128-step greedy launches with the tokens published
(block 0's thread 0 stores the token and the count, each followed by a
system-scope fence, before it starts the next step) and the same launches
without (Params::tokens_out null), alternated round after round. The same
machine code runs both ways, so the difference is the publishing alone.

    PYTHONPATH=<tree> python3 probe_publish.py
"""

import statistics

import torch

from megadelta.bench.timing import timed
from megadelta.checkpoint import random_weights
from megadelta.config import PRESETS
from megadelta.megakernel import MegakernelBackend

STEPS, REPS, ROUNDS = 128, 5, 4

device = torch.device("cuda")
config = PRESETS["qwen3.5-0.8b"]
backend = MegakernelBackend(config, random_weights(config, seed=1, device=device), device, prefill="reference")
state = backend.new_state(STEPS + 2)


def published() -> None:
    state.position = 0
    list(backend.decode_greedy(1, state, STEPS, set()))


def unpublished() -> None:
    state.position = 0
    backend._launch(1, state, STEPS, logits=False, publish=False)
    torch.cuda.current_stream(device).synchronize()


for run in (published, unpublished):
    run()   # warm-up
for r in range(ROUNDS):
    out = {}
    for run in (published, unpublished):
        out[run.__name__] = STEPS / statistics.median(timed(device, run)[1] for _ in range(REPS))
    print(f"round {r + 1} | " + " | ".join(f"{k} {v:.1f} tok/s" for k, v in out.items())
          + f" | unpublished/published {out['unpublished'] / out['published'] - 1:+.2%}", flush=True)
