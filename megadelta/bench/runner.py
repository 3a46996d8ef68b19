"""One benchmark run: environment, ceilings, every system on every workload,
assembled into one result document (see benchmark-result.schema.json)."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import checkpoint
from ..config import ModelConfig, tiny_config
from . import roofline
from .energy import EnergyMeter, Gpu, NvmlUnavailable
from .peers import (HFTransformersSystem, MegadeltaSystem, PeerUnavailable, TimedSystem,
                    Workload, random_tokens, run_llama_bench)
from .stats import energy_per_token, summarize, summarize_rates
from .timing import synchronize, timed

SCHEMA_VERSION = 1
SYSTEMS = ("megadelta-megakernel", "megadelta-reference", "hf-transformers-eager",
           "hf-transformers-compile", "llama.cpp")
PROMPT_SEED_OFFSET = 1  # the prompt's seed differs from the tiny checkpoint's weights' seed


@dataclass(frozen=True)
class Options:
    model: Path | None
    prompts: list[int]
    gens: list[int]
    depths: list[int]
    repetitions: int
    warmup: int
    device: torch.device
    dtype: torch.dtype
    hf_compile: bool = False
    llama_bench: Path | None = None
    gguf: Path | None = None
    seed: int = 0
    systems: frozenset[str] | None = None  # None: every system

    def selected(self, system: str) -> bool:
        return self.systems is None or system in self.systems

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be at least 1, got {self.repetitions}")
        if self.warmup < 0:
            raise ValueError(f"warm-up runs must not be negative, got {self.warmup}")
        if not self.workloads():
            raise ValueError("nothing to run: give a positive -p and/or -n")
        unknown = sorted((self.systems or set()) - set(SYSTEMS))
        if unknown:
            raise ValueError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")

    def workloads(self) -> list[Workload]:
        """ppN for each prompt length; tgN at depth 0 and at each --depth."""
        pp = [Workload("pp", n) for n in self.prompts if n > 0]
        depths = sorted({0, *self.depths})
        tg = [Workload("tg", n, d) for d in depths for n in self.gens if n > 0]
        return pp + tg


@dataclass
class Runs:
    """Raw measurements of one system on one workload."""

    seconds: list[float]
    joules: list[float] | None
    readings: list[dict]   # Gpu.readings() after each run (all None without NVML)
    energy_window: dict | None = None   # {"runs", "seconds", "joules"} when the timed runs were too short


# NVML's energy counter advances in steps (about every 100 ms, ~30 J, on the lent
# H100): tests whose timed runs last less than this together get their energy
# from a separate loop of this length instead.
ENERGY_WINDOW_S = 2.0


# ---- the run -------------------------------------------------------------

def run_benchmark(opts: Options, console: Console) -> dict:
    workloads = opts.workloads()
    with model_checkpoint(opts, console) as (model_dir, random_weights):
        config = checkpoint.load_config(model_dir)
        gpu, energy_skipped = _open_gpu(opts.device)
        console.print(f"measuring ceilings on {opts.device} ...")
        ceilings_before = roofline.measure(opts.device)
        device_info = describe_device(opts.device, gpu)  # clocks read right after the matmul
        meter = None
        if gpu is not None:
            try:
                meter = gpu.energy_meter()
            except NvmlUnavailable as e:
                energy_skipped = str(e)
        context = RunContext(opts, config, gpu, meter, energy_skipped,
                             prompt=random_tokens(config, max(w.max_seq_len for w in workloads),
                                                  opts.seed + PROMPT_SEED_OFFSET))
        results = context.measure_all(model_dir, workloads, console)
        console.print(f"measuring ceilings on {opts.device} again ...")
        ceilings = roofline.best_of(ceilings_before, roofline.measure(opts.device))
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "device": str(opts.device),
        "gpu": device_info,
        "software": software_versions(),
        "model": describe_model(config, model_dir, random_weights, opts.dtype),
        "ceilings": ceilings.to_json(),
        "energy": {"method": meter.method if meter else None, "skipped": energy_skipped},
        "settings": {"repetitions": opts.repetitions, "warmup": opts.warmup, "seed": opts.seed,
                     "dtype": str(opts.dtype).removeprefix("torch.")},
        "results": [roofline.with_fraction(r, ceilings) for r in results],
    }


@dataclass
class RunContext:
    opts: Options
    config: ModelConfig
    gpu: Gpu | None
    meter: EnergyMeter | None
    energy_skipped: str | None
    prompt: list[int]

    def system_factories(self, model_dir: Path) -> list[tuple[str, Callable[[], TimedSystem] | str]]:
        """(name, factory or the reason it is not run) for each timed system."""
        o = self.opts
        max_len = max(w.max_seq_len for w in o.workloads())
        common = dict(device=o.device, dtype=o.dtype, max_seq_len=max_len, prompt=self.prompt)
        megakernel = ("needs a CUDA GPU" if o.device.type != "cuda" else
                      lambda: MegadeltaSystem(model_dir, "megakernel", **common))
        compiled = ("not requested (pass --hf-compile)" if not o.hf_compile else
                    lambda: HFTransformersSystem(model_dir, compile=True, **common))
        factories = [
            ("megadelta-megakernel", megakernel),
            ("megadelta-reference", lambda: MegadeltaSystem(model_dir, "reference", **common)),
            ("hf-transformers-eager", lambda: HFTransformersSystem(model_dir, compile=False, **common)),
            ("hf-transformers-compile", compiled),
        ]
        return [(name, f if o.selected(name) else "not selected (--systems)")
                for name, f in factories]

    def measure_all(self, model_dir: Path, workloads: list[Workload], console: Console) -> list[dict]:
        factories = self.system_factories(model_dir)
        results: list[dict] = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("benchmark", total=len(factories) * len(workloads))
            for name, factory in factories:
                progress.update(task, description=f"{name}: loading")
                system = factory if isinstance(factory, str) else _load(name, factory, console)
                if isinstance(system, str):
                    results += [skipped_entry(name, w, system) for w in workloads]
                    progress.advance(task, len(workloads))
                    continue
                for w in workloads:
                    progress.update(task, description=f"{name}: {w.name}")
                    results.append(self.measure_entry(system, w, console))
                    progress.advance(task)
                system.close()
                _free_memory(self.opts.device)
        results += self.llama_cpp_entries(workloads, console)
        return results

    def measure_entry(self, system: TimedSystem, w: Workload, console: Console) -> dict:
        try:
            runs = self.measure(system, w)
        except PeerUnavailable as e:
            console.print(f"[yellow]{system.name} {w.name} skipped: {e}[/]")
            return skipped_entry(system.name, w, str(e))
        except Exception as e:  # one failing peer must not lose the whole run; it is reported
            console.print(f"[red]{system.name} {w.name} failed: {type(e).__name__}: {e}[/]")
            return skipped_entry(system.name, w, f"failed: {type(e).__name__}: {e}")
        # Launches per decode step: a prefill is not a step (the fast one replays a graph of hundreds).
        launches = system.kernel_launches_per_step if w.kind == "tg" else None
        entry = self.result_entry(system.name, w, runs, launches, warmup=max(self.opts.warmup, system.min_warmup))
        console.print(f"{system.name} {w.name}: {entry['tok_s_median']:,.1f} tok/s "
                      f"± {entry['tok_s_std']:,.1f}")
        return entry

    def measure(self, system: TimedSystem, w: Workload) -> Runs:
        """Warm-up runs, then timed repetitions, each with its energy and the
        board's SM clock and temperatures read right after it."""
        system.prepare(w)
        for _ in range(max(self.opts.warmup, system.min_warmup)):
            system.reset(w)
            system.run(w)
        runs = Runs(seconds=[], joules=[] if self.meter else None, readings=[])
        for _ in range(self.opts.repetitions):
            system.reset(w)
            synchronize(self.opts.device)
            if self.meter:
                self.meter.start()
            produced, seconds = timed(self.opts.device, lambda: system.run(w))
            if self.meter:
                runs.joules.append(self.meter.stop())
            runs.readings.append(self.gpu.readings() if self.gpu else dict.fromkeys(Gpu.READINGS))
            if produced != w.n:
                raise RuntimeError(f"{system.name} processed {produced} tokens in {w.name}, "
                                   f"expected {w.n}")
            runs.seconds.append(seconds)
        if self.meter and sum(runs.seconds) < ENERGY_WINDOW_S:
            runs.energy_window = self.energy_window(system, w)
        return runs

    def energy_window(self, system: TimedSystem, w: Workload) -> dict:
        """Energy of back-to-back repetitions (reset + run) over at least
        ENERGY_WINDOW_S, the meter read once around all of them."""
        synchronize(self.opts.device)
        self.meter.start()
        start, n_runs = time.perf_counter(), 0
        while n_runs == 0 or time.perf_counter() - start < ENERGY_WINDOW_S:
            system.reset(w)
            system.run(w)
            synchronize(self.opts.device)
            n_runs += 1
        joules = self.meter.stop()
        return {"runs": n_runs, "seconds": time.perf_counter() - start, "joules": joules}

    def result_entry(self, system: str, w: Workload, runs: Runs, launches: int | None,
                     warmup: int) -> dict:
        summary = summarize(w.n, runs.seconds)
        entry = _base_entry(system, w) | {
            "runs": summary.runs, "tok_s_median": summary.tok_s_median,
            "tok_s_std": summary.tok_s_std, "kernel_launches_per_step": launches,
            "warmup_runs": warmup, "seconds": runs.seconds,
            "tok_s": [w.n / s for s in runs.seconds],
        }
        entry |= per_run_readings(runs)
        entry |= self.roofline_basis(w)
        entry |= self.energy_fields(w, runs)
        return entry

    def roofline_basis(self, w: Workload) -> dict:
        """What bounds the workload and its work per token; the fraction comes
        once the run's ceilings are final (roofline.with_fraction)."""
        if w.kind == "tg":
            per_token = roofline.decode_bytes_per_token(self.config, w.mean_context, self.opts.dtype.itemsize)
            return {"roofline_bound": "read bandwidth", "bytes_per_token": per_token}
        return {"roofline_bound": f"{roofline.setup_for(self.opts.device).matmul_dtype_name} matmul",
                "flops_per_token": self.config.prefill_flops_per_token(w.mean_context)}

    def energy_fields(self, w: Workload, runs: Runs) -> dict:
        if runs.joules is None:
            return {"joules_per_token": None, "tok_per_joule": None, "avg_power_w": None,
                    "joules": None, "energy_skipped": self.energy_skipped}
        if runs.energy_window is not None and runs.energy_window["joules"] > 0:
            window = runs.energy_window
            j_per_token, watts = energy_per_token(w.n * window["runs"], [window["seconds"]], [window["joules"]])
            return {"joules_per_token": j_per_token, "tok_per_joule": 1 / j_per_token, "avg_power_w": watts,
                    "joules": runs.joules, "energy_window": window, "energy_method": self.meter.method}
        if sum(runs.joules) <= 0:
            return {"joules_per_token": None, "tok_per_joule": None, "avg_power_w": None,
                    "joules": runs.joules, "energy_skipped": "the energy reading did not advance "
                    "during the timed runs; time more tokens (-n, -r)"}
        j_per_token, watts = energy_per_token(w.n, runs.seconds, runs.joules)
        return {"joules_per_token": j_per_token,
                "tok_per_joule": 1 / j_per_token,
                "avg_power_w": watts, "joules": runs.joules, "energy_method": self.meter.method}

    def llama_cpp_entries(self, workloads: list[Workload], console: Console) -> list[dict]:
        o = self.opts
        if not o.selected("llama.cpp"):
            return [skipped_entry("llama.cpp", w, "not selected (--systems)") for w in workloads]
        if o.llama_bench is None and o.gguf is None:
            return [skipped_entry("llama.cpp", w, "not requested (pass --llama-bench BIN --gguf FILE)")
                    for w in workloads]
        if o.llama_bench is None or o.gguf is None:
            return [skipped_entry("llama.cpp", w, "needs both --llama-bench and --gguf")
                    for w in workloads]
        console.print(f"running {o.llama_bench} on {o.gguf} ...")
        try:
            found = {e.workload: e for e in run_llama_bench(o.llama_bench, o.gguf, workloads,
                                                            o.repetitions)}
        except PeerUnavailable as e:
            return [skipped_entry("llama.cpp", w, str(e)) for w in workloads]
        entries = []
        for w in workloads:
            if w not in found:
                entries.append(skipped_entry("llama.cpp", w, "llama-bench reported no such test"))
                continue
            e = found[w]
            summary = summarize_rates(e.samples_ts)
            entries.append(_base_entry("llama.cpp", w) | {
                "runs": summary.runs, "tok_s_median": summary.tok_s_median,
                "tok_s_std": summary.tok_s_std, "kernel_launches_per_step": None,
                "tok_s": e.samples_ts, "seconds": [ns / 1e9 for ns in e.samples_ns],
                "llama_bench": {"avg_ts": e.avg_ts, "stddev_ts": e.stddev_ts,
                                "model_type": e.model_type, "model_size": e.model_size,
                                "build_commit": e.build_commit, "backends": e.backends,
                                "n_gpu_layers": e.n_gpu_layers},
                "joules_per_token": None, "tok_per_joule": None, "avg_power_w": None,
                "energy_skipped": "llama-bench times its own runs; their energy is not isolated",
            } | self.roofline_basis(w))
        return entries


def per_run_readings(runs: Runs) -> dict:
    """Each of the board's readings as a list over the timed runs."""
    return {key: [r[key] for r in runs.readings] for key in Gpu.READINGS}


def _load(name: str, factory: Callable[[], TimedSystem], console: Console) -> TimedSystem | str:
    """The loaded system, or the reason it is skipped."""
    try:
        return factory()
    except PeerUnavailable as e:
        console.print(f"[yellow]{name} skipped: {e}[/]")
        return str(e)
    except Exception as e:  # one failing peer must not lose the whole run; it is reported
        console.print(f"[red]{name} failed to load: {type(e).__name__}: {e}[/]")
        return f"failed to load: {type(e).__name__}: {e}"


def _base_entry(system: str, w: Workload) -> dict:
    return {"system": system, "test": w.name, "batch": 1, "n_tokens": w.n, "depth": w.depth,
            "skipped": None}


def skipped_entry(system: str, w: Workload, reason: str) -> dict:
    """A peer that did not run. The schema needs numbers, so its figures are 0
    with 0 runs; ``skipped`` says why and every reader must check it."""
    return _base_entry(system, w) | {
        "runs": 0, "tok_s_median": 0.0, "tok_s_std": 0.0, "roofline_fraction": None,
        "joules_per_token": None, "avg_power_w": None, "kernel_launches_per_step": None,
        "skipped": reason}


# ---- what was measured on what -------------------------------------------

@contextlib.contextmanager
def model_checkpoint(opts: Options, console: Console) -> Iterator[tuple[Path, bool]]:
    """(checkpoint dir, random weights?): --model; else on a GPU the embedded
    Qwen3.5-0.8B-shaped random checkpoint; else a tiny random checkpoint in a
    temporary directory (a CPU run checks the tool, not performance)."""
    if opts.model is not None:
        yield opts.model, False
    elif opts.device.type == "cuda":
        console.print("no --model: using the embedded random-weight Qwen3.5-0.8B checkpoint")
        yield checkpoint.default_checkpoint(progress=True), True
    else:
        console.print("[bold]No CUDA GPU: benchmarking the reference backend on the CPU with a tiny "
                      "random-weight config.[/] These numbers check the tool and say nothing about "
                      "GPU performance; energy is not measured and the ceilings are the CPU's "
                      "(matmul in float32).")
        with tempfile.TemporaryDirectory(prefix="megadelta-bench-") as tmp:
            yield checkpoint.make_random_checkpoint(Path(tmp) / "tiny-random", tiny_config(),
                                                    seed=opts.seed), True


def _open_gpu(device: torch.device) -> tuple[Gpu | None, str | None]:
    try:
        return Gpu.open(device), None
    except NvmlUnavailable as e:
        return None, str(e)


def describe_device(device: torch.device, gpu: Gpu | None) -> dict:
    if device.type != "cuda":
        return {"name": f"CPU: {_cpu_name()}", "sm_count": 0, "power_limit_w": None,
                "sm_clock_mhz": None, "mem_clock_mhz": None, "driver": "none",
                "cpu_threads": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(device)
    info = {"name": props.name, "sm_count": props.multi_processor_count,
            "memory_gib": props.total_memory / 2**30, "power_limit_w": None,
            "sm_clock_mhz": None, "mem_clock_mhz": None, "driver": "unknown",
            "compute_capability": f"{props.major}.{props.minor}"}
    return info | (gpu.description() if gpu is not None else {})


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_model(config: ModelConfig, model_dir: Path, random_weights: bool,
                   dtype: torch.dtype) -> dict:
    weight_bytes = dtype.itemsize
    return {"name": config.name, "path": str(model_dir), "random_weights": random_weights,
            "params": config.num_params(),
            "bytes_per_decode_step": config.decode_bytes_per_step(weight_bytes),
            "kv_bytes_per_position": roofline.kv_bytes_per_position(config, weight_bytes),
            "flops_per_prompt_token": config.prefill_flops_per_token()}


def software_versions() -> dict:
    try:
        import transformers
        hf = transformers.__version__
    except ImportError:
        hf = None
    return {"megadelta_commit": git_commit(), "torch": torch.__version__,
            "cuda": torch.version.cuda or "none", "transformers": hf,
            "nvrtc": nvrtc(), "python": platform.python_version()}


def nvrtc() -> str | None:
    """The NVRTC that built the megakernel: its code moves tg128 by percents
    (docs/perf-notes.md, twentieth session), so results name it."""
    from ..kernels.build import CompileError, nvrtc_version
    try:
        return nvrtc_version()
    except (CompileError, OSError):
        return None


def git_commit() -> str:
    """$MEGADELTA_COMMIT when set (a tree shipped to a GPU machine may carry no
    .git, or a stale one), else HEAD of the checkout megadelta runs from,
    "-dirty" when tracked files differ from it, else "unknown"."""
    if os.environ.get("MEGADELTA_COMMIT"):
        return os.environ["MEGADELTA_COMMIT"]
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return "unknown"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def command_line() -> str:
    """How this run was started, as a user would type it."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        module = "megadelta.bench" if program.parent.name == "bench" else program.parent.name
        return shlex.join(["python", "-m", module, *sys.argv[1:]])
    return shlex.join([program.name, *sys.argv[1:]])


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-device"


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
