"""Launch shapes of the fast prefill's delta rule, timed against each other:
``python3 -m megadelta.prefill.tune_deltanet --out FILE.json [--lengths 520 2048]``
(needs CUDA).

For each prompt length and each candidate ``DeltaNetTuning``: the GPU time of
the whole ``triton_ops.deltanet`` op replayed from a CUDA graph, as the prefill
runs it (CUDA events around each replay: median, min and max), and its
relative error against ``torch_ops.deltanet`` on the same input: the output,
the final DeltaNet state and the conv state. For the default candidate the
profiler also splits the time of eager calls by kernel.

Each candidate runs in its own Python process (``--one``, on inputs and
references the parent computed once and saved), so that one that faults on
the GPU (an illegal memory access poisons the whole CUDA context) is reported
as failed and the others still run. Candidates ``delta_rule_launches`` rejects
are listed as rejected without running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from ..config import PRESETS, ModelConfig
from . import torch_ops, triton_ops
from .triton_ops import DeltaNetTuning
from .weights import DeltaNetWeights

LENGTHS = (520, 2048)
TOLERANCE = 5e-3   # tf32 products against the float32 definition (tests/gpu/test_prefill.py's STAGE_TOL)
# What the two kernels these replaced took per layer at T = 520 on an H100
# (profiled: chunk kernel 119 us + scan 67 us), for scale.
REPLACED_US_AT_520 = 186.0
RESULT = "RESULT "          # prefix of the lines a --one process reports on
CANDIDATE_TIMEOUT_S = 120   # a candidate process that runs longer is killed and reported


def candidates() -> list[DeltaNetTuning]:
    """The default first, then each kernel's launch shape varied with the
    others at their defaults (the kernels run one after another, so their best
    shapes are independent), then chunks of 32 tokens (half the state pass's
    shared memory per stage, twice its sequential steps). Left out, from an
    H100 sweep at T = 520 (default 81.7 us): 8 warps for the conv (108.5) and
    WY kernels (120.5), WY blocks of 64 (90.6) and the state pass at 16
    columns with fewer stages (1: 91.5, 2: 89.8); and what ``delta_rule_launches``
    rejects (e.g. the state pass at 8 warps and 16 columns)."""
    base = DeltaNetTuning()
    varied = [
        replace(base, conv_rows=32),
        replace(base, wy_block=16),
        # 32 columns 3 stages deep need 240 KB of shared memory, over sm_90's 227
        *(replace(base, state_block_v=32, state_warps=warps, state_stages=2) for warps in (4, 8)),
        *(replace(base, output_block_v=block, output_warps=warps)
          for block, warps in ((32, 4), (128, 4), (64, 8), (128, 8))),
        *(replace(base, chunk=32, state_block_v=block, state_warps=warps)
          for block, warps in ((16, 4), (32, 8), (64, 8))),
    ]
    return list(dict.fromkeys([base, *varied]))


def describe(tuning: DeltaNetTuning) -> str:
    """The fields that differ from the default, or "default"."""
    base = DeltaNetTuning()
    changed = [f"{f.name}={getattr(tuning, f.name)}" for f in fields(tuning)
               if getattr(tuning, f.name) != getattr(base, f.name)]
    return " ".join(changed) or "default"


def random_layer(c: ModelConfig, seq_len: int, device: torch.device | str, proj_dtype: torch.dtype,
                 generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, DeltaNetWeights]:
    """Random inputs shaped as one DeltaNet layer's: the fused projection
    q|k|v|z|b|a [T, conv_dim + value_dim + 2 Hv] in ``proj_dtype``, a non-empty
    conv state and DeltaNet state (float32) and the layer's conv/decay weights,
    with e^A_log uniform in (0, 16)."""
    hv, dk, dv = c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    proj = randn(seq_len, c.conv_dim + c.value_dim + 2 * hv).to(proj_dtype)
    weights = DeltaNetWeights(in_proj=None, conv=randn(c.conv_dim, c.linear_conv_kernel_dim) * 0.5,
                              a_log=(torch.rand(hv, generator=generator) * 16).log().to(device),
                              dt_bias=randn(hv), norm=None, out_proj=None)
    return proj, randn(c.conv_dim, c.linear_conv_kernel_dim - 1), randn(hv, dk, dv) * 0.1, weights


class Layer:
    """One random layer input of length T and the float32 definition's results on it."""

    def __init__(self, c: ModelConfig, tensors: dict[str, Tensor], tuning: DeltaNetTuning):
        self.config, self.tuning = c, tuning
        self.proj, self.conv_state, self.state = tensors["proj"], tensors["conv_state"], tensors["state"]
        self.weights = DeltaNetWeights(in_proj=None, conv=tensors["conv"], a_log=tensors["a_log"],
                                       dt_bias=tensors["dt_bias"], norm=None, out_proj=None)
        self.out_ref, self.conv_ref, self.state_ref = tensors["out_ref"], tensors["conv_ref"], tensors["state_ref"]

    @staticmethod
    def make(c: ModelConfig, seq_len: int, seed: int) -> dict[str, Tensor]:
        """The inputs (on the GPU) and the float32 definition's results on them."""
        proj, conv_state, state, w = random_layer(c, seq_len, "cuda", torch.bfloat16,
                                                  torch.Generator().manual_seed(seed))
        conv_ref, state_ref = conv_state.clone(), state.clone()
        out_ref = torch_ops.deltanet(proj, conv_ref, state_ref, w, c)
        return dict(proj=proj, conv_state=conv_state, state=state, conv=w.conv, a_log=w.a_log, dt_bias=w.dt_bias,
                    out_ref=out_ref, conv_ref=conv_ref, state_ref=state_ref)

    def run(self, conv_state: Tensor, state: Tensor) -> Tensor:
        return triton_ops.deltanet(self.proj, conv_state, state, self.weights, self.config, self.tuning)

    def errors(self) -> dict[str, float]:
        """Relative errors (float64) of one Triton run from the same incoming states."""
        conv_state, state = self.conv_state.clone(), self.state.clone()
        out = self.run(conv_state, state)
        return {"out": rel_err(out, self.out_ref), "state": rel_err(state, self.state_ref),
                "conv": rel_err(conv_state, self.conv_ref)}


def rel_err(a: Tensor, b: Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def measure(layer: Layer, warmup: int, reps: int, per_kernel: bool) -> dict:
    """Errors, then replay times of a CUDA graph of the op (on copies of the
    states, which the replays keep advancing); with ``per_kernel`` also each
    kernel's time over eager calls."""
    result = {"errors": layer.errors()}
    conv_state, state = layer.conv_state.clone(), layer.state.clone()
    layer.run(conv_state, state)   # compiles outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        layer.run(conv_state, state)
    for _ in range(warmup):
        graph.replay()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    result.update(median_us=statistics.median(times), min_us=min(times), max_us=max(times))
    if per_kernel:
        del graph
        result["kernels_us"] = kernel_times(layer, conv_state, state, reps=10)
    return result


def kernel_times(layer: Layer, conv_state: Tensor, state: Tensor, reps: int) -> dict[str, float]:
    """Mean GPU time of each kernel per eager call of the op, from the profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    layer.run(conv_state, state)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            layer.run(conv_state, state)
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            totals[event.name] = totals.get(event.name, 0.0) + event.time_range.elapsed_us()
    if not totals:   # older profilers: the kernels only as averaged rows
        totals = {e.key: e.self_device_time_total for e in prof.key_averages()
                  if e.key.startswith("_") and e.self_device_time_total > 0}
    return {name: us / reps for name, us in totals.items()}


# ---- one candidate, in its own process -------------------------------------

def run_one(config: ModelConfig, tuning: DeltaNetTuning, inputs: Path, lengths: list[int], warmup: int, reps: int,
            per_kernel: bool) -> None:
    """Measures ``tuning`` at each length; prints one RESULT line per length as
    soon as it is known, so a later crash does not lose it."""
    for n in lengths:
        try:
            layer = Layer(config, torch.load(inputs / f"T{n}.pt", map_location="cuda"), tuning)
            result = measure(layer, warmup, reps, per_kernel)
        except Exception as e:   # out of resources, compile errors; a dead context fails every later length too
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            result = {"failed": f"{type(e).__name__}: {first_line}"}
        print(RESULT + json.dumps({"length": n, "result": result}), flush=True)


# ---- the sweep: a process per candidate ------------------------------------

def sweep(config_name: str, lengths: list[int], tunings: list[DeltaNetTuning], warmup: int, reps: int,
          timeout_s: float) -> list[dict]:
    config = PRESETS[config_name]
    rows = []
    for t in tunings:
        row = {"name": describe(t), "tuning": asdict(t), "lengths": {}}
        try:
            triton_ops.delta_rule_launches(config, t)
        except ValueError as e:
            row["rejected"] = str(e)
        rows.append(row)
    with tempfile.TemporaryDirectory(prefix="tune_deltanet_") as tmp:
        inputs = Path(tmp)
        for n in lengths:
            torch.save(Layer.make(config, n, seed=n), inputs / f"T{n}.pt")
        torch.cuda.empty_cache()
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
        for row in rows:
            if "rejected" in row:
                print(f"{row['name']}: REJECTED {row['rejected']}", flush=True)
                continue
            command = [sys.executable, "-m", "megadelta.prefill.tune_deltanet", "--one", json.dumps(row["tuning"]),
                       "--inputs", str(inputs), "--config", config_name, "--warmup", str(warmup), "--reps", str(reps),
                       "--lengths", *map(str, lengths)]
            if row is rows[0]:
                command.append("--per-kernel")
            started = time.monotonic()
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
                stdout, stderr, crash = done.stdout, done.stderr, done.returncode != 0 and f"exit status {done.returncode}"
            except subprocess.TimeoutExpired as e:
                stdout, stderr, crash = _text(e.stdout), _text(e.stderr), f"killed after {timeout_s:.0f} s"
            for line in stdout.splitlines():
                if line.startswith(RESULT):
                    found = json.loads(line[len(RESULT):])
                    row["lengths"][found["length"]] = found["result"]
            reason = crash or "no result"
            if crash:
                last = [line for line in stderr.splitlines() if line.strip()][-1:]
                reason = f"{crash}: {last[0][:300]}" if last else crash
            for n in lengths:
                row["lengths"].setdefault(n, {"failed": f"process {reason}"})
                print(f"T={n} {row['name']}: {summary(row['lengths'][n])}", flush=True)
            row["process_s"] = round(time.monotonic() - started, 1)
    return rows


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def summary(result: dict) -> str:
    if "failed" in result:
        return "FAILED " + result["failed"]
    worst = max(result["errors"].values())
    flag = "" if worst <= TOLERANCE else f"  ERROR ABOVE {TOLERANCE:g}"
    return (f"{result['median_us']:8.1f} us (min {result['min_us']:.1f}, max {result['max_us']:.1f}), "
            f"max rel err {worst:.1e}{flag}")


def print_table(rows: list[dict], lengths: list[int]) -> None:
    """Median us per length (* the fastest within tolerance), worst relative error."""
    best = {}
    for n in lengths:
        ok = [r for r in rows if "median_us" in r["lengths"].get(n, {})
              and max(r["lengths"][n]["errors"].values()) <= TOLERANCE]
        best[n] = min(ok, key=lambda r: r["lengths"][n]["median_us"], default=None)
    width = max(len(r["name"]) for r in rows)
    print(f"\n{'candidate':<{width}} " + " ".join(f"{'T=' + str(n):>10}" for n in lengths) + f" {'max err':>9}")
    for r in rows:
        cells, errors = [], []
        for n in lengths:
            result = r["lengths"].get(n, {})
            if "median_us" in result:
                cells.append(f"{result['median_us']:9.1f}{'*' if best[n] is r else ' '}")
                errors.append(max(result["errors"].values()))
            else:
                cells.append(f"{'rejected' if 'rejected' in r else 'failed':>10}")
        err = f"{max(errors):9.1e}" if errors else f"{'-':>9}"
        print(f"{r['name']:<{width}} " + " ".join(cells) + f" {err}")
    print(f"(us per layer, CUDA-graph replay; the replaced kernels took {REPLACED_US_AT_520:.0f} us at T=520)")
    for n in lengths:
        kernels = rows[0]["lengths"].get(n, {}).get("kernels_us")
        if kernels:
            print(f"T={n} default, eager, by kernel (us per call, {sum(kernels.values()):.1f} in all):")
            for name, us in sorted(kernels.items(), key=lambda kv: -kv[1]):
                print(f"  {us:8.1f}  {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results here (JSON); required for the sweep")
    parser.add_argument("--config", default="qwen3.5-0.8b", choices=sorted(PRESETS))
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=CANDIDATE_TIMEOUT_S, help="seconds per candidate process")
    parser.add_argument("--one", help=argparse.SUPPRESS)          # a DeltaNetTuning as JSON: run it alone
    parser.add_argument("--inputs", help=argparse.SUPPRESS)       # where the parent saved the layers
    parser.add_argument("--per-kernel", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("tune_deltanet needs a CUDA GPU")
    if args.one:
        run_one(PRESETS[args.config], DeltaNetTuning(**json.loads(args.one)), Path(args.inputs), args.lengths,
                args.warmup, args.reps, args.per_kernel)
        return
    if not args.out:
        parser.error("--out is required")

    import triton

    tunings = candidates()
    print(f"{torch.cuda.get_device_name()}: {len(tunings)} candidates x lengths {args.lengths}, {args.config}, "
          f"one process each", flush=True)
    started = time.monotonic()
    rows = sweep(args.config, args.lengths, tunings, args.warmup, args.reps, args.timeout)
    print_table(rows, args.lengths)
    print(f"sweep took {time.monotonic() - started:.0f} s")
    with open(args.out, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                       config=args.config, warmup=args.warmup, reps=args.reps, tolerance=TOLERANCE,
                       replaced_us_at_520=REPLACED_US_AT_520, candidates=rows), f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
