"""Producer log probe: per block and matrix kind, clocks waiting for a free slot, for the in-flight window, and the rest."""
import json, statistics, sys, time
import torch
from megadelta.config import PRESETS
from megadelta.megakernel import MegakernelBackend
from megadelta.kernels.codegen import UNIT_CLOCK_AT
from megadelta.checkpoint import random_weights

extra = tuple(sys.argv[1].split()) if len(sys.argv) > 1 else ()
device = torch.device("cuda")
config = PRESETS["qwen3.5-0.8b"]
weights = random_weights(config, seed=1, device=device)
be = MegakernelBackend(config, weights, device, prefill="reference",
                       kernel_options=("-DPROBE_PRODUCER_LOG", "-DPROBE_LOG_FIRST_PAGE=1600", *extra))
state = be.new_state(64)
region = be.barrier[UNIT_CLOCK_AT + 8: UNIT_CLOCK_AT + 8 + be.grid * 32]
for rep in range(2):
    state.position = 0
    torch.cuda.synchronize()
    region.zero_()
    list(be.decode_greedy(1, state, 8, set()))
    torch.cuda.synchronize()
w = region.cpu().view(be.grid, 8, 4).tolist()
names = {1: "dn_in", 2: "att_in", 3: "out", 4: "gate_up", 5: "down", 6: "lm_head"}
out = {"options": " ".join(extra)}
fr = {"empty": [], "retire": [], "rest": []}
kinds = {}
for b in range(be.grid):
    tot = sum(w[b][k][1] + w[b][k][2] + w[b][k][3] for k in names)
    for i, key in ((1, "empty"), (2, "retire"), (3, "rest")):
        fr[key].append(sum(w[b][k][i] for k in names) / tot)
    for k, n in names.items():
        d = kinds.setdefault(n, [0, 0, 0, 0])
        for i in range(4):
            d[i] += w[b][k][i] / be.grid
out["window_clocks_mean"] = statistics.mean(sum(w[b][k][1] + w[b][k][2] + w[b][k][3] for k in names) for b in range(be.grid))
out["frac_min_mean_max"] = {k: [round(min(v), 3), round(statistics.mean(v), 3), round(max(v), 3)] for k, v in fr.items()}
out["per_kind_mean_pages_clocks_per_page_empty_retire_rest"] = {
    n: [round(d[0]), round(d[1] / d[0]), round(d[2] / d[0]), round(d[3] / d[0])] for n, d in kinds.items()}
print(json.dumps(out))
