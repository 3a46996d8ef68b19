"""Page timeline probe (temporary): where block TL_BLOCK's pages wait, one DeltaNet layer in detail."""
import json, statistics, sys
import torch
from megadelta.checkpoint import random_weights
from megadelta.config import PRESETS, ATTENTION
from megadelta.megakernel import MegakernelBackend

TL = 5120
cfg = PRESETS["qwen3.5-0.8b"]
dev = torch.device("cuda")
w = random_weights(cfg, seed=1, device=dev)
out = {}
for block in [int(b) for b in sys.argv[1].split(",")]:
    be = MegakernelBackend(cfg, w, dev, prefill="reference", kernel_options=("-DPAGE_TIMELINE=1", f"-DTL_BLOCK={block}"))
    G = be.grid
    st = be.new_state(64)
    list(be.decode_greedy(1, st, 2, set()))
    st.position = 1
    torch.cuda.synchronize()
    words = be.barrier[2:2 + 5 * TL]
    words.zero_()
    words[2 * TL:4 * TL] = 2**62
    first = int(be.barrier[0]) // G
    list(be.decode_greedy(1, st, 3, set()))
    torch.cuda.synchronize()
    t = words.cpu().view(5, TL).double()
    # the block's page sequence: matrices in the producer's order
    H, I, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    def pages(rows, R, upp):
        n = -(-rows // R); u0 = n * block // G; u1 = n * (block + 1) // G
        return -(-(u1 - u0) // upp)
    dn_in = 2 * 2048 + 2 * 2048 + 32  # q,k,v,z rows + b,a for 0.8b
    seq = []
    for layer, kind in enumerate(cfg.layer_types):
        if kind == ATTENTION:
            seq += [("attn.in", pages(8 * 512 + 2 * 2 * 256, 2, 2)), ("attn.out", pages(H, 1, 2))]
        else:
            seq += [("dn.in", pages(dn_in, 2, 2)), ("dn.out", pages(H, 1, 2))]
        seq += [("gate_up", pages(2 * I, 2, 2)), ("down", pages(I, 1, 4))]
    seq += [("lm_head", pages(V, 2, 2))]
    per_step = sum(n for _, n in seq)
    nb = len(cfg.layer_types) * 4 + sum(1 for k in cfg.layer_types if k == ATTENTION) + 1
    step = 1
    base_page = step * per_step
    bar = [t[4, (first + step * nb + i - 1) % TL].item() for i in range(nb + 1)]  # left barrier before each stage
    t0 = bar[0]
    rows = []
    q = base_page
    agg = {}
    for name, n in seq:
        r = t[:, q:q + n]
        wait = (r[3] - r[2]).clamp(min=0)
        d = {"n": n, "first_wanted": r[2].min().item() - t0, "last_ready": r[3].max().item() - t0,
             "first_reached": r[0].min().item() - t0, "first_issued": r[1].min().item() - t0,
             "last_issued": r[1].max().item() - t0,
             "consumer_wait_us": wait.sum().item() / 1e3,
             "producer_block_us": (r[1] - r[0]).sum().item() / 1e3,
             "issue_to_ready_mean_us": (r[3] - r[1]).mean().item() / 1e3}
        rows.append((name, d, q))
        a = agg.setdefault(name, {k: 0.0 for k in ["consumer_wait_us", "producer_block_us", "issue_to_ready_mean_us", "count"]})
        for k in ["consumer_wait_us", "producer_block_us", "issue_to_ready_mean_us"]:
            a[k] += d[k]
        a["count"] += 1
        q += n
    for name, a in agg.items():
        c = a.pop("count"); a["issue_to_ready_mean_us"] /= c
        a["consumer_wait_us_per_instance"] = a["consumer_wait_us"] / c
        a["producer_block_us_per_instance"] = a["producer_block_us"] / c
    step_us = (bar[-1] - bar[0]) / 1e3
    print(f"block {block}: grid {G}, pages/step {per_step}, step {step_us:.1f} us")
    print(json.dumps(agg, indent=1))
    # one DeltaNet layer in detail: layer 4 (DN), pages relative to its first barrier
    li = 4
    lb = li * 4 + sum(1 for k in cfg.layer_types[:li] if k == ATTENTION)
    L0 = bar[lb]
    print("layer", li, "barriers (us from layer start):", [round((bar[lb + i] - L0) / 1e3, 2) for i in range(5)])
    for name, d, q0 in rows[4 * li:4 * li + 4]:
        for k in range(d["n"]):
            c = t[:, q0 + k]
            print(f"{name:8s} p{k:2d} reached {(c[0]-L0)/1e3:7.2f} issued {(c[1]-L0)/1e3:7.2f} "
                  f"wanted {(c[2]-L0)/1e3:7.2f} ready {(c[3]-L0)/1e3:7.2f}")
    out[block] = {"agg": agg, "step_us": step_us}
json.dump(out, open(sys.argv[2], "w"), indent=1)
