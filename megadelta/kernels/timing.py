"""Time the megakernel against its bandwidth floor (used by scripts/gpu_suite.sh).

    python3 -m megadelta.kernels.timing --out result.json [--config qwen3.5-0.8b]

Measures, on random weights: the read bandwidth (the floor's denominator),
tg128 (128 greedy tokens in one launch from a 1-token context), the per-step
latency of single-step decode, and greedy throughput at deeper contexts (the KV
cache is filled with random values instead of a slow prefill: timing only).
With ``--stages``, a build that clocks where each block begins each layer and
the output projection (STAGE_CLOCK in common.cuh) splits one step into those
stages and the points each block passes in them, and gives each block's
timeline of four layers (when it began each and passed each point, on the
GPU's global clock).
With ``--units``, a build that clocks every product unit of block 0 in four
layers (UNIT_CLOCK) says where a product's time goes: the wait for the unit's
page, the sums, the release, the epilogue, and how long before the page had
been issued.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..bench.roofline import GPU_SETUP, read_bandwidth
from ..bench.timing import timed
from ..checkpoint import random_weights
from ..config import ATTENTION, PRESETS, ModelConfig
from ..megakernel import PLACEMENT_CANDIDATES, MegakernelBackend
from .codegen import (
    STAGE_CLOCK_AT,
    STAGE_CLOCK_SLOTS,
    STAGE_CLOCK_WORDS,
    STAGE_POINT_SLOTS,
    STAGE_POINTS,
    TIMELINE_AT,
    TIMELINE_BLOCKS,
    TIMELINE_RECORD,
    TIMELINE_WORDS,
    UNIT_CLOCK_AT,
    UNIT_CLOCK_HEADER,
    UNIT_CLOCK_LAYER,
    UNIT_CLOCK_LAYERS,
    UNIT_CLOCK_PAGES,
    UNIT_CLOCK_UNITS,
    UNIT_CLOCK_WORDS,
)


def greedy_seconds(backend: MegakernelBackend, depth: int, n_gen: int, reps: int) -> float:
    state = backend.new_state(depth + n_gen + 2)
    state.k_cache.normal_()
    state.v_cache.normal_()
    times = []
    for _ in range(reps + 1):   # the first is a warm-up
        state.position = depth
        times.append(timed(backend.device, lambda: list(backend.decode_greedy(1, state, n_gen, set())))[1])
    return statistics.median(times[1:])


def time_backend(backend: MegakernelBackend, depths: list[int], reps: int) -> dict:
    n_gen = 128
    out = {}
    for depth in depths:
        s = greedy_seconds(backend, depth, n_gen, reps)
        out[f"tg{n_gen}@{depth}"] = {"tok_s": n_gen / s, "ms_per_token": s / n_gen * 1e3}
    state = backend.new_state(64)
    steps = [timed(backend.device, lambda: backend.decode(1, state))[1] for _ in range(32)]
    out["single_step_ms"] = statistics.median(steps[2:]) * 1e3
    return out


# Steps of the launch the stage clock times (its last); their stages fit the clock's slots.
STAGE_STEPS = 8


def stage_names(config: ModelConfig) -> list[str]:
    """The stages of a decode step, in order (common.cuh, STAGE_CLOCK): each layer, then the output projection."""
    return ["attention" if t == ATTENTION else "deltanet" for t in config.layer_types] + ["lm_head"]


def stage_breakdown(config: ModelConfig, weights: dict, device: torch.device, depth: int,
                    options: tuple[str, ...] = (), grid: int | None = None) -> dict:
    """Microseconds per stage kind (mean over blocks of each block's time in
    the stage, summed over layers; and the slowest block's), and when within
    their stages the blocks passed each StagePoint, in the order passed (kind,
    mean and slowest block, summed over layers), from the last step of a
    STAGE_STEPS-step greedy launch of the STAGE_CLOCK build (with extra NVRTC
    ``options``, on ``grid`` blocks): a step well inside a multi-step launch,
    as tg128 runs them."""
    backend = MegakernelBackend(config, weights, device, prefill="reference",
                                kernel_options=("-DSTAGE_CLOCK=1", *options), grid=grid)
    names = stage_names(config)
    assert STAGE_STEPS * len(names) <= STAGE_CLOCK_SLOTS, "the launch's stages overflow the clock's slots"
    state = backend.new_state(depth + STAGE_STEPS + 2)
    state.position = depth
    list(backend.decode_greedy(1, state, STAGE_STEPS, set()))   # warm-up
    state.position = depth
    torch.cuda.synchronize()
    clock_words = backend.barrier[STAGE_CLOCK_AT:STAGE_CLOCK_AT + STAGE_CLOCK_WORDS]
    timeline_words = backend.barrier[TIMELINE_AT:TIMELINE_AT + TIMELINE_WORDS]
    clock_words.zero_()
    timeline_words.zero_()
    list(backend.decode_greedy(1, state, STAGE_STEPS, set()))
    torch.cuda.synchronize()
    clock = clock_words.cpu()
    durations = clock[:2 * STAGE_CLOCK_SLOTS].view(STAGE_CLOCK_SLOTS, 2)
    points = clock[2 * STAGE_CLOCK_SLOTS:].view(STAGE_CLOCK_SLOTS, STAGE_POINT_SLOTS, 3)
    stages: dict[str, list[float]] = {}
    inside: dict[str, list[list]] = {}
    for number, name in enumerate(names, start=(STAGE_STEPS - 1) * len(names)):   # the last step's
        slowest, total = durations[number].tolist()
        mean_max = stages.setdefault(name, [0.0, 0.0])
        mean_max[0] += total / backend.grid / 1e3
        mean_max[1] += slowest / 1e3
        per_point = inside.setdefault(name, [])
        for k, (slowest, total, kind) in enumerate(points[number].tolist()):
            if kind == 0:   # no block passed a k-th point
                break
            if k == len(per_point):
                per_point.append([STAGE_POINTS[kind - 1], 0.0, 0.0])
            per_point[k][1] += total / backend.grid / 1e3
            per_point[k][2] += slowest / 1e3
    return {"depth": depth, "stage_us_mean_max": stages, "step_us": sum(m for m, _ in stages.values()),
            "points_us_mean_max": inside,
            "timeline": summarize_timeline(timeline_words.cpu().tolist(), min(backend.grid, TIMELINE_BLOCKS))}


def summarize_timeline(words: list[int], blocks: int) -> dict:
    """The STAGE_CLOCK build's timeline (common.cuh: stage_timeline) in
    microseconds from the first block's start of the window: per block, per
    window layer, [begin, [[point, time], ...]]."""
    def record(block: int, k: int) -> list[int]:
        at = (block * UNIT_CLOCK_LAYERS + k) * TIMELINE_RECORD
        return words[at:at + TIMELINE_RECORD]

    t0 = min(record(b, 0)[0] for b in range(blocks))
    per_block = []
    for b in range(blocks):
        layers = []
        for k in range(UNIT_CLOCK_LAYERS):
            begin, *points = record(b, k)
            passed = [[STAGE_POINTS[kind - 1], round((t - t0) / 1e3, 3)]
                      for t, kind in zip(points[0::2], points[1::2]) if kind > 0]
            layers.append([round((begin - t0) / 1e3, 3), passed])
        per_block.append(layers)
    return {"layers": list(range(UNIT_CLOCK_LAYER, UNIT_CLOCK_LAYER + UNIT_CLOCK_LAYERS)), "blocks": per_block}


def product_names(config: ModelConfig) -> dict[tuple[str, int, int], str]:
    """(layer kind, rows, columns of the matrix) -> the product's name."""
    c = config
    mlp = {(kind, *shape): name for kind in ("deltanet", "attention") for shape, name in (
        ((2 * c.intermediate_size, c.hidden_size), "mlp.gate_up"),
        ((c.hidden_size, c.intermediate_size), "mlp.down"))}
    return {("deltanet", c.conv_dim + c.value_dim + 2 * c.linear_num_value_heads, c.hidden_size): "deltanet.in_proj",
            ("deltanet", c.hidden_size, c.value_dim): "deltanet.out_proj",
            ("attention", 2 * c.q_size + 2 * c.kv_size, c.hidden_size): "attention.in_proj",
            ("attention", c.hidden_size, c.q_size): "attention.o_proj", **mlp}


def summarize_units(config: ModelConfig, words: list[int]) -> dict:
    """The UNIT_CLOCK record (common.cuh) as SM clocks per layer and product:
    units, when the first began and the last ended (from the layer's start),
    and mean / max of each part of a unit, with the least time any page had
    been issued before a warp had it (-1: its issue was not recorded)."""
    n_units = min(words[0] & 0xFFFFFFFF, UNIT_CLOCK_UNITS)
    layer_start = words[2:2 + UNIT_CLOCK_LAYERS + 1]
    pages = UNIT_CLOCK_HEADER + 8 * UNIT_CLOCK_UNITS
    issued = {words[pages + 2 * i]: words[pages + 2 * i + 1]
              for i in range(UNIT_CLOCK_PAGES) if words[pages + 2 * i + 1]}
    names = product_names(config)
    groups: dict[tuple[int, str], list[list[int]]] = {}
    for i in range(n_units):
        shape, page_unit, _warp, *t = words[UNIT_CLOCK_HEADER + 8 * i: UNIT_CLOCK_HEADER + 8 * i + 8]
        rows, columns = shape & 0xFFFFFFFF, shape >> 32
        k = sum(t[0] >= start for start in layer_start[1:UNIT_CLOCK_LAYERS])   # the window's layer
        layer = UNIT_CLOCK_LAYER + k
        kind = "attention" if config.layer_types[layer] == ATTENTION else "deltanet"
        page = page_unit & 0xFFFFFFFF
        groups.setdefault((layer, names.get((kind, rows, columns), f"{rows}x{columns}")), []).append(
            [t[0] - layer_start[k], t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3],
             t[1] - issued[page] if page in issued else -1])
    products = []
    for (layer, name), units in sorted(groups.items()):
        part = {key: [u[i] for u in units] for i, key in
                enumerate(("top", "acquire", "sums", "release", "epilogue", "issued_before_had"))}
        products.append({"layer": layer, "product": name, "units": len(units),
                         "first_top": min(part["top"]), "last_done": max(u[0] + sum(u[1:5]) for u in units),
                         **{key: [statistics.mean(part[key]), max(part[key])]
                            for key in ("acquire", "sums", "release", "epilogue")},
                         "issued_before_had_min": min(part["issued_before_had"])})
    return {"clock": "SM clocks", "layer_clocks": [b - a for a, b in zip(layer_start, layer_start[1:])],
            "products": products}


def unit_breakdown(config: ModelConfig, weights: dict, device: torch.device, depth: int,
                   options: tuple[str, ...] = (), grid: int | None = None) -> dict:
    """summarize_units of the second step of a two-step greedy launch of the
    UNIT_CLOCK build (with extra NVRTC ``options``, on ``grid`` blocks)."""
    backend = MegakernelBackend(config, weights, device, prefill="reference",
                                kernel_options=("-DUNIT_CLOCK=1", *options), grid=grid)
    state = backend.new_state(depth + 8)
    record = backend.barrier[UNIT_CLOCK_AT:UNIT_CLOCK_AT + UNIT_CLOCK_WORDS]
    for _ in range(2):   # a warm-up, then the one recorded
        state.position = depth
        torch.cuda.synchronize()
        record.zero_()
        list(backend.decode_greedy(1, state, 2, set()))
    torch.cuda.synchronize()
    return {"depth": depth, **summarize_units(config, record.cpu().tolist())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="qwen3.5-0.8b", choices=sorted(PRESETS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--depths", default="0,4096,32768")
    parser.add_argument("--options", default="", metavar="OPTIONS",
                        help="NVRTC options of the main build, e.g. --options=-DPAGES_IN_FLIGHT=2: a variant in "
                             "a process of its own (a --variant timed 4%% slower than the same build alone)")
    parser.add_argument("--variant", action="append", default=[], metavar="OPTIONS",
                        help="also time the kernel built with these NVRTC options (repeatable), "
                             "e.g. --variant=-DPAGES_IN_FLIGHT=2 (note the =: the value starts with a dash)")
    parser.add_argument("--placement-candidates", type=int, default=PLACEMENT_CANDIDATES, metavar="N",
                        help="placements of the hand-off vectors the main build times at start and keeps "
                             f"the fastest of (default {PLACEMENT_CANDIDATES}; 1: one placement, untimed)")
    parser.add_argument("--grid", type=int, default=None, metavar="BLOCKS",
                        help="blocks a launch of every build timed (default: the backend's grid_blocks)")
    parser.add_argument("--stages", action="store_true",
                        help="also split a step into stages with the STAGE_CLOCK build (variants: at the "
                             "first depth)")
    parser.add_argument("--units", action="store_true",
                        help="also clock block 0's product units in four layers with the UNIT_CLOCK build "
                             "(at the first depth)")
    args = parser.parse_args()

    device = torch.device("cuda")
    config = PRESETS[args.config]
    t0 = time.perf_counter()
    weights = random_weights(config, seed=1, device=device)
    main_options = tuple(args.options.split())
    backend = MegakernelBackend(config, weights, device, prefill="reference", kernel_options=main_options,
                                placement_candidates=args.placement_candidates, grid=args.grid)
    setup_s = time.perf_counter() - t0
    bandwidth_before = read_bandwidth(device, GPU_SETUP)
    depths = [int(d) for d in args.depths.split(",")]
    timings = {"default": time_backend(backend, depths, args.reps)}
    for variant_options in args.variant:
        options = tuple(variant_options.split())
        variant = MegakernelBackend(config, weights, device, prefill="reference", kernel_options=options,
                                    grid=args.grid)
        timings[variant_options] = time_backend(variant, depths, args.reps)
    # The better of two measurements, before and after the timings, as the
    # benchmark takes it (bench/roofline.py: the read trials' two states).
    each = [bandwidth_before, read_bandwidth(device, GPU_SETUP)]
    floor_s = config.decode_bytes_per_step() / max(each)
    for timing in timings.values():
        for tg in (v for k, v in timing.items() if k.startswith("tg")):
            tg["fraction_of_floor"] = floor_s / (tg["ms_per_token"] / 1e3)
    result = {
        "config": config.name, "device": torch.cuda.get_device_name(device), "grid": backend.grid,
        "options": args.options, "placement_seconds": backend.placement_seconds,
        "setup_seconds": setup_s, "read_bandwidth_gbs": max(each) / 1e9,
        "read_bandwidth_each_gbs": [b / 1e9 for b in each],
        "decode_bytes_per_step": config.decode_bytes_per_step(),
        "floor_ms": floor_s * 1e3, "floor_tok_s": 1 / floor_s,
    } | timings
    if args.stages:
        for variant_options in args.variant:
            result[variant_options]["stages"] = stage_breakdown(config, weights, device, depths[0],
                                                                tuple(variant_options.split()), args.grid)
        result["stages"] = [stage_breakdown(config, weights, device, d, main_options, args.grid) for d in depths]
    if args.units:
        result["units"] = unit_breakdown(config, weights, device, depths[0], main_options, args.grid)
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
