"""megadelta bench: statistics, energy, ceilings, peers, reports and an
end-to-end CPU run on the tiny config."""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest
import torch
from rich.console import Console

from megadelta.bench import main as bench_main
from megadelta.bench import report, roofline
from megadelta.bench.energy import EnergyCounter, Gpu, NvmlUnavailable, PowerSampler
from megadelta.bench.peers import (HFTransformersSystem, PeerUnavailable, Workload,
                                   llama_bench_commands, parse_llama_bench)
from megadelta.bench.runner import Options, RunContext, gpu_slug, run_benchmark
from megadelta.bench.stats import energy_per_token, summarize, summarize_rates
from megadelta.config import QWEN35_0_8B, tiny_config

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEST_PATTERN = r"^(pp|tg)[0-9]+(@[0-9]+)?$"

# What `llama-bench -m qwen3.5-0.8b-bf16.gguf -p 520 -n 128 -d 0,4096 -r 3 -ngl 99 -o json`
# prints (one object per test; the field set of llama.cpp builds from 2025 on).
LLAMA_BENCH_JSON = """[
  {
    "build_commit": "a1b2c3d4", "build_number": 6120, "cpu_info": "AMD EPYC 9454 48-Core Processor",
    "gpu_info": "NVIDIA H100 80GB HBM3", "backends": "CUDA",
    "model_filename": "models/qwen3.5-0.8b-bf16.gguf", "model_type": "qwen35 0.8B BF16",
    "model_size": 1504786048, "model_n_params": 752393024, "n_batch": 2048, "n_ubatch": 512,
    "n_threads": 48, "cpu_mask": "0x0", "cpu_strict": false, "poll": 50, "type_k": "f16",
    "type_v": "f16", "n_gpu_layers": 99, "split_mode": "layer", "main_gpu": 0,
    "no_kv_offload": false, "flash_attn": false, "tensor_split": "0.00", "use_mmap": true,
    "embeddings": false, "n_prompt": 520, "n_gen": 0, "n_depth": 0,
    "test_time": "2026-11-20T10:02:11Z", "avg_ns": 21734000, "stddev_ns": 412000,
    "avg_ts": 23927.483, "stddev_ts": 449.114,
    "samples_ns": [21301000, 22207000, 21694000], "samples_ts": [24411.99, 23416.04, 23969.76]
  },
  {
    "build_commit": "a1b2c3d4", "build_number": 6120, "cpu_info": "AMD EPYC 9454 48-Core Processor",
    "gpu_info": "NVIDIA H100 80GB HBM3", "backends": "CUDA",
    "model_filename": "models/qwen3.5-0.8b-bf16.gguf", "model_type": "qwen35 0.8B BF16",
    "model_size": 1504786048, "model_n_params": 752393024, "n_batch": 2048, "n_ubatch": 512,
    "n_threads": 48, "cpu_mask": "0x0", "cpu_strict": false, "poll": 50, "type_k": "f16",
    "type_v": "f16", "n_gpu_layers": 99, "split_mode": "layer", "main_gpu": 0,
    "no_kv_offload": false, "flash_attn": false, "tensor_split": "0.00", "use_mmap": true,
    "embeddings": false, "n_prompt": 0, "n_gen": 128, "n_depth": 0,
    "test_time": "2026-11-20T10:02:13Z", "avg_ns": 403122000, "stddev_ns": 2210000,
    "avg_ts": 317.526, "stddev_ts": 1.741,
    "samples_ns": [401017000, 402931000, 405418000], "samples_ts": [319.19, 317.67, 315.72]
  },
  {
    "build_commit": "a1b2c3d4", "build_number": 6120, "cpu_info": "AMD EPYC 9454 48-Core Processor",
    "gpu_info": "NVIDIA H100 80GB HBM3", "backends": "CUDA",
    "model_filename": "models/qwen3.5-0.8b-bf16.gguf", "model_type": "qwen35 0.8B BF16",
    "model_size": 1504786048, "model_n_params": 752393024, "n_batch": 2048, "n_ubatch": 512,
    "n_threads": 48, "cpu_mask": "0x0", "cpu_strict": false, "poll": 50, "type_k": "f16",
    "type_v": "f16", "n_gpu_layers": 99, "split_mode": "layer", "main_gpu": 0,
    "no_kv_offload": false, "flash_attn": false, "tensor_split": "0.00", "use_mmap": true,
    "embeddings": false, "n_prompt": 0, "n_gen": 128, "n_depth": 4096,
    "test_time": "2026-11-20T10:02:19Z", "avg_ns": 431870000, "stddev_ns": 3050000,
    "avg_ts": 296.392, "stddev_ts": 2.091,
    "samples_ns": [428540000, 432530000, 434540000], "samples_ts": [298.69, 295.93, 294.56]
  }
]"""


def schema() -> dict:
    return json.loads(report.SCHEMA_PATH.read_text())


# ---- the schema ---------------------------------------------------------------

@pytest.mark.skipif(not (SHARED / "benchmark-result.schema.json").is_file(),
                    reason="no ../shared checkout beside the repository")
def test_packaged_schema_is_the_shared_one():
    shared = (SHARED / "benchmark-result.schema.json").read_text()
    assert report.SCHEMA_PATH.read_text() == shared


def test_validation_rejects_a_malformed_test_name():
    doc = synthetic_doc()
    report.validate(doc)
    doc["results"][0]["test"] = "tg128@"
    with pytest.raises(jsonschema.ValidationError):
        report.validate(doc)


# ---- statistics -----------------------------------------------------------------

def test_summary_of_synthetic_timings():
    s = summarize(100, [1.0, 0.5, 0.25])  # 100, 200, 400 tok/s
    assert s.runs == 3
    assert s.tok_s_median == pytest.approx(200.0)
    # sample standard deviation (n - 1), as llama-bench reports
    mean = 700 / 3
    expected = math.sqrt(((100 - mean) ** 2 + (200 - mean) ** 2 + (400 - mean) ** 2) / 2)
    assert s.tok_s_std == pytest.approx(expected)


def test_summary_of_one_run_and_even_count():
    assert summarize(10, [2.0]).tok_s_std == 0.0
    assert summarize_rates([1.0, 2.0, 4.0, 8.0]).tok_s_median == pytest.approx(3.0)


@pytest.mark.parametrize("n, seconds", [(0, [1.0]), (5, []), (5, [0.0]), (5, [1.0, -1.0])])
def test_summary_rejects_bad_timings(n, seconds):
    with pytest.raises(ValueError):
        summarize(n, seconds)


def test_energy_pools_runs():
    # 2 runs x 100 tokens, 3 J + 5 J over 0.1 s + 0.3 s
    j_per_token, watts = energy_per_token(100, [0.1, 0.3], [3.0, 5.0])
    assert j_per_token == pytest.approx(8.0 / 200)
    assert watts == pytest.approx(8.0 / 0.4)


# ---- workloads and ceilings ------------------------------------------------------

def test_workload_names_follow_the_schema():
    opts = Options(model=None, prompts=[128, 520, 0], gens=[128], depths=[4096, 32768],
                   repetitions=1, warmup=0, device=torch.device("cpu"), dtype=torch.float32)
    names = [w.name for w in opts.workloads()]
    assert names == ["pp128", "pp520", "tg128", "tg128@4096", "tg128@32768"]
    assert all(re.match(TEST_PATTERN, n) for n in names)


@pytest.mark.parametrize("kwargs", [dict(prompts=[0], gens=[0]), dict(repetitions=0),
                                    dict(warmup=-1)])
def test_options_reject_empty_or_bad_runs(kwargs):
    base = dict(model=None, prompts=[16], gens=[8], depths=[], repetitions=1, warmup=0,
                device=torch.device("cpu"), dtype=torch.float32)
    with pytest.raises(ValueError):
        Options(**(base | kwargs))


def test_roofline_fractions():
    c = roofline.Ceilings(read_bandwidth_gbs=3000.0, matmul_tflops=700.0, matmul_dtype="bfloat16",
                          matmul_size=8192, bandwidth_buffer_bytes=2 << 30, device="cuda:0", reads_per_trial=10)
    # prefill is averaged over the prompt: ppN sits at mean context N/2
    assert Workload("pp", 520).mean_context == 260
    assert Workload("tg", 128, 4096).mean_context == 4096 + 64
    flops = QWEN35_0_8B.prefill_flops_per_token(260)
    assert roofline.prefill_fraction(flops, 1e4, c) == pytest.approx(flops * 1e4 / 700e12)
    at_zero = roofline.decode_bytes_per_token(QWEN35_0_8B, 0, 2)
    assert at_zero == QWEN35_0_8B.decode_bytes_per_step(2)
    assert roofline.decode_fraction(at_zero, 1000.0, c) == pytest.approx(at_zero * 1000 / 3e12)
    # at depth the KV cache is read too: 6 attention layers x (k, v) x 2 heads x 256 x 2 bytes
    kv = roofline.kv_bytes_per_position(QWEN35_0_8B, 2)
    assert kv == 6 * 2 * 2 * 256 * 2
    assert roofline.decode_bytes_per_token(QWEN35_0_8B, 32768, 2) == at_zero + 32768 * kv


def test_ceilings_of_a_run_are_the_best_of_its_measurements():
    def measured(read, rate):
        return roofline.Ceilings(read, rate, "bfloat16", 8192, 2 << 30, "cuda:0", 10)

    before, after = measured(3070.0, 650.0), measured(3105.0, 640.0)
    c = roofline.best_of(before, after)
    assert (c.read_bandwidth_gbs, c.matmul_tflops) == (3105.0, 650.0)
    doc = c.to_json()
    assert (doc["read_bandwidth_each_gbs"], doc["matmul_each_tflops"]) == ([3070.0, 3105.0], [650.0, 640.0])
    assert "best of 2 such measurements" in doc["method"]
    once = measured(3000.0, 700.0).to_json()
    assert once["read_bandwidth_each_gbs"] == [3000.0] and "such measurements" not in once["method"]
    # a fraction is taken against the best: the low measurement would flatter it
    entry = {"skipped": None, "tok_s_median": 1000.0, "bytes_per_token": 1.5e9}
    assert roofline.with_fraction(entry, c)["roofline_fraction"] == pytest.approx(1.5e12 / 3105e9)
    prefill = {"skipped": None, "tok_s_median": 1e4, "flops_per_token": 2e9}
    assert roofline.with_fraction(prefill, c)["roofline_fraction"] == pytest.approx(2e13 / 650e12)
    assert roofline.with_fraction({"skipped": "needs a CUDA GPU"}, c)["roofline_fraction"] is None


def test_cpu_ceilings_are_measured_and_labelled():
    c = roofline.measure(torch.device("cpu"))
    assert c.read_bandwidth_gbs > 0.1 and c.matmul_tflops > 1e-4
    assert c.to_json()["matmul_dtype"] == "float32"


# ---- energy ---------------------------------------------------------------------

class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, energy_mj=(), watts=100.0):
        self.energy_mj = list(energy_mj)
        self.watts = watts

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy_mj.pop(0)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.watts * 1e3


def test_energy_counter_difference_in_joules():
    meter = EnergyCounter(FakeNvml(energy_mj=[1_000_000, 1_002_500]), handle=None)
    meter.start()
    assert meter.stop() == pytest.approx(2.5)


def test_power_sampler_integrates_constant_power():
    meter = PowerSampler(FakeNvml(watts=100.0), handle=None, interval_s=0.002)
    t0 = time.perf_counter()
    meter.start()
    time.sleep(0.05)
    joules = meter.stop()
    elapsed = time.perf_counter() - t0
    assert 100.0 * 0.05 <= joules <= 100.0 * elapsed + 1e-9


class BoardNvml(FakeNvml):
    """The readings a board reports after a run; memory_temp None: a board
    without the HBM temperature field."""
    NVML_CLOCK_SM, NVML_TEMPERATURE_GPU, NVML_FI_DEV_MEMORY_TEMP, NVML_SUCCESS = 1, 0, 82, 0
    NVML_VALUE_TYPE_DOUBLE, NVML_VALUE_TYPE_UNSIGNED_INT, NVML_VALUE_TYPE_UNSIGNED_LONG = 0, 1, 2
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, NVML_VALUE_TYPE_SIGNED_LONG_LONG = 3, 4

    def __init__(self, memory_temp: int | None, field_return: int = 0):
        super().__init__()
        self.memory_temp, self.field_return = memory_temp, field_return

    def nvmlDeviceGetClockInfo(self, handle, clock):
        assert clock == self.NVML_CLOCK_SM
        return 1965

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 41

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        assert field_ids == [self.NVML_FI_DEV_MEMORY_TEMP]
        if self.memory_temp is None:
            raise self.NVMLError("not supported")
        value = type("Union", (), {"uiVal": self.memory_temp, "dVal": -1.0})()
        return [type("Field", (), {"nvmlReturn": self.field_return, "valueType": self.NVML_VALUE_TYPE_UNSIGNED_INT,
                                   "value": value})()]


def test_board_readings_after_a_run():
    assert Gpu(BoardNvml(memory_temp=47), handle=None).readings() == {
        "sm_clock_mhz": 1965, "gpu_temp_c": 41, "memory_temp_c": 47}
    # a field the board does not report, by exception or by its per-field status, reads None
    assert Gpu(BoardNvml(memory_temp=None), handle=None).readings()["memory_temp_c"] is None
    assert Gpu(BoardNvml(memory_temp=47, field_return=3), handle=None).readings()["memory_temp_c"] is None


def test_missing_nvml_is_a_reason_not_a_crash(monkeypatch):
    with pytest.raises(NvmlUnavailable, match="CPU run"):
        Gpu.open(torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlUnavailable, match="not installed"):
        Gpu.open(torch.device("cuda"))


# ---- peers --------------------------------------------------------------------------

def test_parse_llama_bench_json():
    entries = parse_llama_bench(LLAMA_BENCH_JSON)
    assert [e.workload.name for e in entries] == ["pp520", "tg128", "tg128@4096"]
    tg = entries[1]
    assert tg.samples_ts == [319.19, 317.67, 315.72]
    assert tg.samples_ns[0] == 401017000
    assert tg.avg_ts == pytest.approx(317.526)
    assert tg.model_type == "qwen35 0.8B BF16" and tg.build_commit == "a1b2c3d4"
    assert tg.n_gpu_layers == 99


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"n_prompt": 1}', "array"),
    ('[{"n_prompt": 512, "n_gen": 0}]', "lacks a field"),
    ('[{"n_prompt": 512, "n_gen": 128, "avg_ts": 1, "stddev_ts": 0, "samples_ts": [1]}]',
     "combined"),
])
def test_parse_llama_bench_rejects_bad_output(text, message):
    with pytest.raises(ValueError, match=message):
        parse_llama_bench(text)


def test_llama_bench_runs_only_requested_tests():
    workloads = [Workload("pp", 520), Workload("tg", 128), Workload("tg", 128, 4096)]
    pp, tg = llama_bench_commands(Path("llama-bench"), Path("m.gguf"), workloads, 5)
    assert pp[pp.index("-p") + 1] == "520" and pp[pp.index("-n") + 1] == "0"
    assert "-d" not in pp
    assert tg[tg.index("-p") + 1] == "0" and tg[tg.index("-n") + 1] == "128"
    assert tg[tg.index("-d") + 1] == "0,4096"
    assert pp[pp.index("-o") + 1] == "json" and pp[pp.index("-r") + 1] == "5"


def test_missing_transformers_is_a_reason(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(PeerUnavailable, match="transformers is not installed"):
        HFTransformersSystem(tmp_path, torch.device("cpu"), torch.float32, 16, [1] * 16,
                             compile=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from megadelta.checkpoint import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("bench") / "tiny", tiny_config(), seed=0)


@pytest.mark.parametrize("compile, workload", [(False, Workload("tg", 3, 5)),
                                               (True, Workload("tg", 3))])
def test_transformers_peer_times_only_the_decode_steps(tiny_checkpoint, compile, workload):
    """After a run the cache holds the untimed context plus the timed tokens
    (run() checks this itself); a second run starts from the same context."""
    pytest.importorskip("transformers")
    prompt = list(range(10, 20))
    system = HFTransformersSystem(tiny_checkpoint, torch.device("cpu"), torch.float32, 10,
                                  prompt, compile=compile)
    system.prepare(workload)
    for _ in range(2):
        system.reset(workload)
        assert system._cache.get_seq_length() == workload.depth
        assert system.run(workload) == workload.n
        assert system._cache.get_seq_length() == workload.depth + workload.n


def test_compiled_transformers_peer_declines_prefill(tiny_checkpoint):
    pytest.importorskip("transformers")
    system = HFTransformersSystem(tiny_checkpoint, torch.device("cpu"), torch.float32, 10,
                                  list(range(10)), compile=True)
    with pytest.raises(PeerUnavailable, match="hf-transformers-eager"):
        system.prepare(Workload("pp", 8))


class SleepySystem:
    """A stand-in peer: each run sleeps a known time."""

    name = "sleepy"
    kernel_launches_per_step = 3
    min_warmup = 0

    def __init__(self):
        self.runs = 0

    def prepare(self, workload):
        pass

    def reset(self, workload):
        pass

    def run(self, workload):
        self.runs += 1
        time.sleep(0.002 * workload.n)
        return workload.n

    def close(self):
        pass


def test_runner_measures_peers_and_records_unavailable_ones(monkeypatch):
    opts = Options(model=None, prompts=[4], gens=[3], depths=[], repetitions=3, warmup=2,
                   device=torch.device("cpu"), dtype=torch.float32)
    ctx = RunContext(opts, tiny_config(), gpu=None, meter=None,
                     energy_skipped="no NVIDIA GPU in use (CPU run)", prompt=list(range(8)))
    sleepy = SleepySystem()

    def unavailable():
        raise PeerUnavailable("not on this machine")

    monkeypatch.setattr(RunContext, "system_factories", lambda self, model_dir: [
        ("sleepy", lambda: sleepy), ("absent", unavailable), ("unasked", "not requested")])
    results = ctx.measure_all(Path("unused"), opts.workloads(), Console(quiet=True))
    assert sleepy.runs == 2 * (3 + 2)  # two workloads x (repetitions + warm-up)
    by = {(r["system"], r["test"]): r for r in results}
    pp = by["sleepy", "pp4"]
    assert pp["runs"] == 3 and pp["skipped"] is None and len(pp["seconds"]) == 3
    assert all(pp[key] == [None] * 3 for key in Gpu.READINGS)   # no board to read on a CPU run
    assert all(s >= 0.008 for s in pp["seconds"])
    assert pp["tok_s_median"] <= 4 / 0.008
    assert pp["kernel_launches_per_step"] is None and pp["warmup_runs"] == 2   # not a decode step
    assert by["sleepy", "tg3"]["kernel_launches_per_step"] == 3
    assert pp["joules_per_token"] is None and "CPU run" in pp["energy_skipped"]
    assert by["absent", "tg3"]["skipped"] == "not on this machine"
    assert by["unasked", "pp4"]["skipped"] == "not requested"
    assert by["llama.cpp", "pp4"]["skipped"].startswith("not requested")
    assert {r["system"] for r in results} == {"sleepy", "absent", "unasked", "llama.cpp"}


def test_runner_records_the_boards_readings_after_each_run(monkeypatch):
    opts = Options(model=None, prompts=[], gens=[2], depths=[], repetitions=3, warmup=0,
                   device=torch.device("cpu"), dtype=torch.float32)
    ctx = RunContext(opts, tiny_config(), gpu=Gpu(BoardNvml(memory_temp=47), handle=None), meter=None,
                     energy_skipped="not measured here", prompt=list(range(8)))
    monkeypatch.setattr(RunContext, "system_factories", lambda self, model_dir: [("sleepy", SleepySystem)])
    tg = ctx.measure_all(Path("unused"), opts.workloads(), Console(quiet=True))[0]
    assert (tg["sm_clock_mhz"], tg["gpu_temp_c"], tg["memory_temp_c"]) == ([1965] * 3, [41] * 3, [47] * 3)


class SteppedNvml(FakeNvml):
    """An energy counter that, like NVML's on an H100, advances in steps: 100 W
    of draw, read in whole 1 J steps (one per 10 ms, longer than a timed run here)."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 1000 * int(self.watts * time.perf_counter())   # millijoules, in whole joules


def test_short_tests_take_energy_from_a_long_enough_window(monkeypatch):
    """Timed runs of ~8 ms read 0 or one step of the counter; the energy comes
    from a separate loop of ENERGY_WINDOW_S instead, and is right."""
    from megadelta.bench import runner

    monkeypatch.setattr(runner, "ENERGY_WINDOW_S", 0.5)
    opts = Options(model=None, prompts=[4], gens=[], depths=[], repetitions=3, warmup=0,
                   device=torch.device("cpu"), dtype=torch.float32)
    ctx = RunContext(opts, tiny_config(), gpu=None, meter=EnergyCounter(SteppedNvml(), handle=None),
                     energy_skipped=None, prompt=list(range(8)))
    sleepy = SleepySystem()
    monkeypatch.setattr(RunContext, "system_factories", lambda self, model_dir: [("sleepy", lambda: sleepy)])
    pp = {r["test"]: r for r in ctx.measure_all(Path("unused"), opts.workloads(), Console(quiet=True))
          if r["system"] == "sleepy"}["pp4"]
    window = pp["energy_window"]
    assert window["seconds"] >= 0.5 and sleepy.runs == 3 + window["runs"]
    assert pp["avg_power_w"] == pytest.approx(100.0, rel=0.05)       # +-1 step of 1 J over >= 50 J
    assert pp["joules_per_token"] == pytest.approx(window["joules"] / (4 * window["runs"]))
    assert len(pp["joules"]) == 3                                      # the timed runs' own readings stay


# ---- reports ----------------------------------------------------------------------

def synthetic_doc() -> dict:
    def result(system, test, tok_s, tok_j):
        return {"system": system, "test": test, "batch": 1, "runs": 3, "tok_s_median": tok_s,
                "tok_s_std": tok_s / 100, "roofline_fraction": 0.5,
                "joules_per_token": 1 / tok_j, "tok_per_joule": tok_j, "avg_power_w": 300.0,
                "kernel_launches_per_step": 1, "skipped": None}

    return {
        "schema_version": 1, "created": "2026-11-25T12:00:00+00:00",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "sm_count": 132, "power_limit_w": 700.0,
                "sm_clock_mhz": 1980, "driver": "580.00"},
        "software": {"megadelta_commit": "abc123"},
        "model": {"name": "qwen3.5-0.8b", "params": 752393024,
                  "bytes_per_decode_step": 1542534784},
        "ceilings": {"read_bandwidth_gbs": 3000.0, "bf16_matmul_tflops": 700.0},
        "results": [result("megadelta-megakernel", "tg128", 1500.0, 6.0),
                    result("hf-transformers-eager", "tg128", 90.0, 0.5),
                    result("megadelta-megakernel", "pp520", 20000.0, 60.0),
                    {"system": "llama.cpp", "test": "tg128", "batch": 1, "runs": 0,
                     "tok_s_median": 0.0, "tok_s_std": 0.0, "skipped": "not requested"}],
    }


def test_chart_is_a_nonempty_png(tmp_path):
    path = tmp_path / "chart.png"
    report.write_chart(synthetic_doc(), path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_markdown_table_lists_results_and_skipped_peers():
    md = report.markdown(synthetic_doc())
    assert "| megadelta-megakernel | tg128 | 1,500.0 | 15.0 | 50.0% |" in md
    assert "not run: llama.cpp (tg128): not requested" in md
    assert "3000 GB/s read," in md
    doc = synthetic_doc()
    doc["ceilings"]["read_bandwidth_each_gbs"] = [2970.4, 3000.0]
    assert "3000 GB/s read (the better of 2970 and 3000)," in report.markdown(doc)


def test_readme_table_from_saved_json(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(synthetic_doc()))
    assert bench_main(["--readme-table", str(path)]) == 0
    assert capsys.readouterr().out == report.markdown(synthetic_doc())


def test_module_runs_standalone(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(synthetic_doc()))
    out = subprocess.run([sys.executable, "-m", "megadelta.bench", "--readme-table", str(path)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert "| hf-transformers-eager | tg128 |" in out


def write_two_runs(folder: Path) -> None:
    """An older full run and a newer one without pp520, under names that sort
    the other way round."""
    older, newer = synthetic_doc(), synthetic_doc()
    newer["created"] = "2026-11-26T08:30:59+00:00"
    newer["software"] = {"megadelta_commit": "ae0913dd16e0737e09aeb6812d50c7c27c7000e5",
                         "nvrtc": "13.0"}
    newer["results"] = [r for r in newer["results"] if r["test"] != "pp520"]
    newer["results"][0]["tok_s_median"] = 1595.8
    (folder / "a-newer.json").write_text(json.dumps(newer))
    (folder / "b-older.json").write_text(json.dumps(older))


def test_results_index_lists_newest_first(tmp_path):
    write_two_runs(tmp_path)
    lines = report.results_index(sorted(tmp_path.glob("*.json"))).splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in lines if line.startswith("| [")]
    newer, older = rows
    assert newer[:5] == ["[a-newer.json](a-newer.json)", "2026-11-26 08:30", "ae0913d", "13.0",
                         "3000"]
    # megakernel tg128 (median ± std), its roofline fraction and J/token; no pp520, no
    # tg128@4096 or @32768; transformers' tg128; llama.cpp's was skipped
    assert newer[5:] == ["1,595.8 ± 15.0", "50.0%", "0.167", "–", "–", "–", "90.0 ± 0.9", "–"]
    assert older[:4] == ["[b-older.json](b-older.json)", "2026-11-25 12:00", "abc123", "–"]
    assert older[5:9] == ["1,500.0 ± 15.0", "50.0%", "0.167", "20,000.0 ± 200.0"]


def test_results_index_flag_writes_index_md(tmp_path, capsys):
    write_two_runs(tmp_path)
    assert bench_main(["--results-index", str(tmp_path)]) == 0
    index = tmp_path / "INDEX.md"
    assert capsys.readouterr().out.strip() == str(index)
    text = index.read_text()
    assert text == report.results_index(sorted(tmp_path.glob("*.json")))
    assert text.splitlines()[4].startswith("| [a-newer.json](a-newer.json) | 2026-11-26 08:30 |")


@pytest.mark.parametrize("files", [[], ["notes.md"]])
def test_results_index_of_a_folder_without_json_is_an_error(tmp_path, capsys, files):
    for name in files:
        (tmp_path / name).write_text("no results here")
    with pytest.raises(SystemExit) as exc:
        bench_main(["--results-index", str(tmp_path)])
    assert exc.value.code == 2
    assert "no *.json result files" in capsys.readouterr().err
    assert not (tmp_path / "INDEX.md").exists()


def test_gpu_slug():
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


# ---- end to end -----------------------------------------------------------------------

def fake_llama_bench(tmp_path: Path) -> Path:
    """A stand-in llama-bench: answers each -p/-n/-d combination in -o json form."""
    script = tmp_path / "llama-bench"
    template = json.loads(LLAMA_BENCH_JSON)[0]
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import argparse, json
        ap = argparse.ArgumentParser()
        for flag in ("-m", "-r", "-ngl", "-o", "-p", "-n", "-d"):
            ap.add_argument(flag)
        a = ap.parse_args()
        template = {json.dumps(template)!r}
        out = []
        for d in (a.d or "0").split(","):
            for p in a.p.split(","):
                for n in a.n.split(","):
                    if int(p) or int(n):
                        t = json.loads(template)
                        t.update(n_prompt=int(p), n_gen=int(n), n_depth=int(d),
                                 samples_ts=[100.0, 110.0][:int(a.r)])
                        out.append(t)
        print(json.dumps(out))
        """))
    script.chmod(0o755)
    return script


def test_end_to_end_on_cpu(tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    code = bench_main(["-p", "16", "-n", "8", "-r", "2", "--device", "cpu",
                       "--output", str(tmp_path / "results"),
                       "--llama-bench", str(fake_llama_bench(tmp_path)), "--gguf", str(gguf)])
    assert code == 0
    assert "No CUDA GPU" in capsys.readouterr().out
    files = sorted((tmp_path / "results").glob("*/*"))
    assert {f.suffix for f in files} == {".json", ".md", ".png"}
    doc = json.loads(next(f for f in files if f.suffix == ".json").read_text())
    jsonschema.validate(doc, schema())
    assert doc["model"]["random_weights"] is True
    assert doc["ceilings"]["matmul_dtype"] == "float32"
    reads = doc["ceilings"]["read_bandwidth_each_gbs"]   # before and after the timed runs
    assert len(reads) == 2 and doc["ceilings"]["read_bandwidth_gbs"] == max(reads)
    assert doc["energy"]["skipped"] and doc["energy"]["method"] is None
    by = {(r["system"], r["test"]): r for r in doc["results"]}
    for test, n in (("pp16", 16), ("tg8", 8)):
        ref = by["megadelta-reference", test]
        assert ref["skipped"] is None and ref["runs"] == 2 and len(ref["seconds"]) == 2
        assert ref["tok_s_median"] == pytest.approx(statistics.median(n / s for s in ref["seconds"]))
        assert ref["roofline_fraction"] > 0
        assert ref["joules_per_token"] is None and ref["energy_skipped"]
        assert by["megadelta-megakernel", test]["skipped"] == "needs a CUDA GPU"
        assert by["hf-transformers-compile", test]["skipped"].startswith("not requested")
        assert by["llama.cpp", test]["runs"] == 2
    assert by["llama.cpp", "tg8"]["tok_s_median"] == pytest.approx(105.0)
    tg = by["megadelta-reference", "tg8"]   # against the better read measurement
    assert tg["roofline_fraction"] == pytest.approx(tg["bytes_per_token"] * tg["tok_s_median"] / (max(reads) * 1e9))
    assert by["hf-transformers-eager", "tg8"]["skipped"] is None


@pytest.mark.gpu
def test_end_to_end_on_gpu_measures_energy(tmp_path):
    opts = Options(model=None, prompts=[32], gens=[16], depths=[], repetitions=2, warmup=1,
                   device=torch.device("cuda"), dtype=torch.bfloat16)
    doc = run_benchmark(opts, Console(quiet=True))
    report.validate(doc)
    ref = next(r for r in doc["results"]
               if r["system"] == "megadelta-reference" and r["test"] == "tg16")
    assert ref["skipped"] is None
    assert doc["gpu"]["sm_count"] > 0 and doc["ceilings"]["read_bandwidth_gbs"] > 100
    if doc["energy"]["method"] is not None:
        assert ref["joules_per_token"] > 0 and ref["avg_power_w"] > 0
