"""Prefill throughput against the matmul floor: ``python -m megadelta.prefill.bench``.

For each prompt length: the median time of a prefill from an empty state
(CUDA-graph replay and eager), tokens per second, and the fraction of the
floor, the time the prefill's matmul FLOPs take at the measured bf16 GEMM rate.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from ..bench.peers import random_tokens
from ..bench.timing import timed
from ..checkpoint import random_weights
from ..config import PRESETS
from ..state import SequenceState
from . import FastPrefill


def gemm_rate(n: int = 8192, reps: int = 10) -> float:
    """Measured dense bf16 GEMM FLOP/s (random data, n x n x n)."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    seconds = time_ms(lambda: a @ b, reps) / 1e3
    return 2 * n ** 3 / seconds


def time_ms(fn, reps: int) -> float:
    """Median milliseconds of fn() over ``reps`` calls, after two discarded warm-up calls."""
    device = torch.device("cuda", torch.cuda.current_device())
    times = [timed(device, fn)[1] for _ in range(reps + 2)]
    return statistics.median(times[2:]) * 1e3


def floor_ms(config, seq_len: int, flops_per_s: float) -> float:
    # query t attends over t+1 keys: the attention term at the mean context
    flops = seq_len * config.prefill_flops_per_token(context=(seq_len + 1) / 2)
    return flops / flops_per_s * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen3.5-0.8b", choices=sorted(PRESETS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 520, 2048, 8192])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", type=int, metavar="T", help="print the kernel-time table of one eager pp T")
    args = parser.parse_args(argv)

    config = PRESETS[args.config]
    weights = random_weights(config, seed=0, device="cuda")
    fast = FastPrefill(config, weights, "cuda")
    state = SequenceState.empty(config, max(args.lengths), torch.bfloat16, "cuda")
    rate = gemm_rate()
    print(f"{torch.cuda.get_device_name()}: bf16 GEMM {rate / 1e12:.0f} TFLOP/s")
    rows = []
    for n in args.lengths:
        tokens = random_tokens(config, n, seed=n)

        def run():
            state.position = 0
            fast.prefill(tokens, state)
        graphs = fast.graphs
        graph_ms = time_ms(run, args.reps)
        fast.graphs = None
        eager_ms = time_ms(run, args.reps)
        fast.graphs = graphs
        floor = floor_ms(config, n, rate)
        rows.append(dict(tokens=n, graph_ms=graph_ms, eager_ms=eager_ms, floor_ms=floor,
                         graph_tok_s=n / graph_ms * 1e3, eager_tok_s=n / eager_ms * 1e3,
                         floor_tok_s=n / floor * 1e3, fraction_of_floor=floor / graph_ms))
    print(f"{'pp':>6} {'graph ms':>9} {'tok/s':>9} {'eager ms':>9} {'tok/s':>9} {'floor tok/s':>11} {'of floor':>8}")
    for r in rows:
        print(f"{r['tokens']:>6} {r['graph_ms']:>9.3f} {r['graph_tok_s']:>9.0f} {r['eager_ms']:>9.3f} "
              f"{r['eager_tok_s']:>9.0f} {r['floor_tok_s']:>11.0f} {r['fraction_of_floor']:>8.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), gemm_flops=rate, rows=rows), f, indent=1)
    if args.profile:
        profile(fast, config, args.profile)


def profile(fast: FastPrefill, config, n: int) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    tokens = list(range(n))
    state = SequenceState.empty(config, n, torch.bfloat16, "cuda")
    graphs, fast.graphs = fast.graphs, None
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        fast.prefill(tokens, state)
        torch.cuda.synchronize()
    fast.graphs = graphs
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
