"""Probe: per-unit clock of block 0's products in layers 4-7 of step 1 (probe build only)."""
import json, os, statistics, sys
import torch
from megadelta.checkpoint import random_weights
from megadelta.config import PRESETS
from megadelta.megakernel import MegakernelBackend

cfg = PRESETS["qwen3.5-0.8b"]
dev = torch.device("cuda")
b = MegakernelBackend(cfg, random_weights(cfg, seed=1, device=dev), dev, prefill="reference")
st = b.new_state(64)
for _ in range(3):
    st.position = 0
    b.barrier[2:].zero_()
    torch.cuda.synchronize()
    list(b.decode_greedy(1, st, 2, set()))
torch.cuda.synchronize()
d = b.barrier[2:].cpu().tolist()
n = d[0] & 0xffffffff
first_page, layer_t = d[1], d[2:7]
units = [d[8 + 8 * i: 16 + 8 * i] for i in range(min(n, 1900))]
issued = {d[16000 + 2 * i]: d[16001 + 2 * i] for i in range(4800) if d[16001 + 2 * i]}
names = {8224: "dn_in", 1024: "out", 7168: "gate_up", 5120: "attn_in", 3584: "down"}
out = {"layer_t": layer_t, "first_page": first_page, "units": units, "issued": issued}
json.dump(out, open(os.path.join(os.environ["OUT"], "unit_clock.json"), "w"))
t_base = layer_t[0]
print("layer starts (cycles from layer 4):", [t - t_base for t in layer_t])
by = {}
for rows, pj, warp, t0, t1, t2, t3, t4 in units:
    layer = max(i for i in range(4) if t0 >= layer_t[i])
    page = pj & 0xffffffff
    by.setdefault((layer, names.get(rows, rows)), []).append((warp, pj >> 32, page, t0, t1, t2, t3, t4, issued.get(page)))
for (layer, name), us in sorted(by.items()):
    us.sort(key=lambda u: u[3])
    start = min(u[3] for u in us) - layer_t[layer]
    end = max(u[7] for u in us) - layer_t[layer]
    acq = [u[4] - u[3] for u in us]; sm = [u[5] - u[4] for u in us]; rel = [u[6] - u[5] for u in us]; ep = [u[7] - u[6] for u in us]
    ahead = [u[4] - u[8] for u in us if u[8]]
    print(f"L{layer+4} {name:8s} units {len(us):3d} span {start:7d}..{end:7d}  acquire mean/max {statistics.mean(acq):6.0f}/{max(acq):6d}"
          f"  sums {statistics.mean(sm):5.0f}/{max(sm):5d}  release {statistics.mean(rel):4.0f}  epilogue {statistics.mean(ep):5.0f}/{max(ep):5d}"
          f"  had-issued min {min(ahead) if ahead else -1}")
    if layer == 0 and name in ("dn_in", "gate_up"):
        for u in us[:20]:
            print("    w%d j%-3d page %5d top %6d acq %5d sums %4d rel %3d epi %5d issued %7d" % (u[0], u[1], u[2], u[3] - layer_t[layer], u[4] - u[3], u[5] - u[4], u[6] - u[5], u[7] - u[6], (u[8] or 0) - layer_t[layer]))
