"""Does where the weights lie in HBM move tg128, as where the read ceiling's
buffer lies seems to move the ceiling (call 1: processes at ~3,072 or ~3,104
GB/s)? In one process: the read ceiling over 4 buffers of 2 GiB held at once
(trials interleaved); tg128 (kernel alone, main's build) with the tied
embedding (the output projection's 509 MB) in each of 4 copies held at once,
then with every layer matrix in each of 3 copies, each placement timed twice in
interleaved passes so that drift shows apart from placement. JSON to stdout."""
import json
import statistics

import torch

from megadelta.bench.roofline import GPU_SETUP
from megadelta.bench.timing import timed
from megadelta.config import PRESETS
from megadelta.kernels.timing import greedy_seconds
from megadelta.megakernel import LAYER_FIELDS, MegakernelBackend, _ptr
from megadelta.checkpoint import random_weights

device = torch.device("cuda")


def ceiling_by_buffer(n_buffers: int = 4, passes: int = 8) -> list[dict]:
    buffers = [torch.randn(GPU_SETUP.bandwidth_bytes // 4, dtype=torch.float32, device=device)
               for _ in range(n_buffers)]
    gbs = [[] for _ in buffers]
    for b in buffers:
        b.sum()
    for _ in range(passes):
        for i, b in enumerate(buffers):
            s = timed(device, lambda: [b.sum() for _ in range(GPU_SETUP.reads_per_trial)])[1]
            gbs[i].append(b.numel() * 4 * GPU_SETUP.reads_per_trial / s / 1e9)
    out = [{"address_gib": round(b.data_ptr() / 2**30, 3), "median_gbs": round(statistics.median(g), 1),
            "best_gbs": round(max(g), 1)} for b, g in zip(buffers, gbs)]
    del buffers
    torch.cuda.empty_cache()
    return out


def tg128(backend) -> float:
    return 128 / greedy_seconds(backend, 0, 128, 7)


def main() -> None:
    result = {"ceiling_by_buffer": ceiling_by_buffer()}
    config = PRESETS["qwen3.5-0.8b"]
    weights = random_weights(config, seed=1, device=device)
    backend = MegakernelBackend(config, weights, device, prefill="reference")
    buf = backend.buffers
    tg128(backend)   # warm
    embeds = [buf.globals["embed"]] + [buf.globals["embed"].clone() for _ in range(3)]
    runs = {i: [] for i in range(len(embeds))}
    for _ in range(2):
        for i, e in enumerate(embeds):
            buf.globals["embed"] = e
            runs[i].append(round(tg128(backend), 1))
    result["embed_copies"] = [{"address_gib": round(e.data_ptr() / 2**30, 3), "tg128": runs[i]}
                              for i, e in enumerate(embeds)]
    buf.globals["embed"] = embeds[0]
    del embeds
    layer_sets = [buf.layers] + [[{k: v.clone() for k, v in layer.items()} for layer in buf.layers]
                                 for _ in range(2)]
    tables = [torch.tensor([[_ptr(layer.get(f)) for f in LAYER_FIELDS] for layer in layers],
                           dtype=torch.int64).to(device) for layers in layer_sets]
    runs = {i: [] for i in range(len(layer_sets))}
    for _ in range(2):
        for i, table in enumerate(tables):
            buf.layers, buf.layer_table = layer_sets[i], table
            runs[i].append(round(tg128(backend), 1))
    result["layer_copies"] = [{"w_in_address_gib": round(s[0]["w_in"].data_ptr() / 2**30, 3), "tg128": runs[i]}
                              for i, s in enumerate(layer_sets)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
