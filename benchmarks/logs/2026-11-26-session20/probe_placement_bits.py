"""Probe 6: the grid probe (probe 4) found that x_mid's speed follows its
offset inside a 2 MB segment, the same in each of four segments. Relative to
what? One process, short trials (three 32-step launches, the least; two
rounds, the better kept):
  a. x_mid at 64 offsets, 32 KB apart, in one segment (the trial state fixed);
  b. x_mid kept at a middling offset, the DeltaNet state moved: a view at 64
     offsets, 32 KB apart, into a larger buffer;
  c. the same for the conv state (16 offsets);
  d. x_mid at 64 offsets 1 KB apart around a's best.
JSON to argv[1]."""
import json
import statistics
import sys

import torch

from megadelta.bench.timing import best_trial_seconds
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.megakernel import PLACEMENT_TRIAL_STEPS, MegakernelBackend

weights = random_weights(QWEN35_0_8B, 0, device="cuda")
b = MegakernelBackend(QWEN35_0_8B, weights, "cuda", prefill="reference", placement_candidates=1)
scratch = b.buffers.scratch
state = b.new_state(PLACEMENT_TRIAL_STEPS + 1)
SEG = 2 << 20


def short():
    def launch():
        b._launch(1, state, PLACEMENT_TRIAL_STEPS, logits=False, publish=False)
    return PLACEMENT_TRIAL_STEPS / best_trial_seconds(b.device, launch, 3)


def scan(assign, offsets):
    rows = []
    for _ in range(2):
        row = []
        for o in offsets:
            assign(o)
            row.append(round(short(), 1))
        rows.append(row)
    return [max(a, c) for a, c in zip(*rows)]


def mover(holder, name, tensor):
    """assign(offset): holder[name] = a copy of tensor at byte offset in a big buffer."""
    n = tensor.numel()
    big = torch.zeros((tensor.numel() * tensor.element_size() + 2 * SEG) // tensor.element_size(),
                      dtype=tensor.dtype, device="cuda")
    print(f"{name}: big buffer at {hex(big.data_ptr())}")

    def assign(offset):
        start = offset // tensor.element_size()
        view = big[start:start + n].view(tensor.shape)
        view.copy_(tensor)
        if isinstance(holder, dict):
            holder[name] = view
        else:
            setattr(holder, name, view)
    return assign


out = {}
x_mid = scratch["x_mid"]
print(f"x_mid at {hex(x_mid.data_ptr())}, dn_state at {hex(state.deltanet_state.data_ptr())}, "
      f"conv at {hex(state.conv_state.data_ptr())}, x at {hex(scratch['x'].data_ptr())}")
place_x_mid = mover(scratch, "x_mid", x_mid)
out["a_x_mid_32k"] = scan(place_x_mid, [k * 32768 for k in range(64)])
print("a x_mid 32K steps:", out["a_x_mid_32k"])
ranked = sorted(range(64), key=lambda k: out["a_x_mid_32k"][k])
middle = ranked[32]
place_x_mid(middle * 32768)
out["b_dn_state_32k"] = scan(mover(state, "deltanet_state", state.deltanet_state), [k * 32768 for k in range(64)])
print("b dn_state 32K steps:", out["b_dn_state_32k"])
out["c_conv_state_128k"] = scan(mover(state, "conv_state", state.conv_state), [k * 131072 for k in range(16)])
print("c conv_state 128K steps:", out["c_conv_state_128k"])
best = ranked[-1] * 32768
out["d_x_mid_1k_around"] = scan(place_x_mid, [max(0, best - 32768) + k * 1024 for k in range(64)])
print(f"d x_mid 1K steps from {max(0, best - 32768)}:", out["d_x_mid_1k_around"])
for k, v in out.items():
    print(k, "min", min(v), "median", statistics.median(v), "max", max(v))
json.dump(out, open(sys.argv[1], "w"), indent=1)
