"""The two ceilings every result is compared with, measured in the same run.

* read bandwidth: sums over a buffer far larger than any cache; bytes read
  / time. Each trial runs several sums back to back: one 2 GB sum takes
  ~0.7 ms on an H100, and a trial of one varied by 6% on one machine
  (2,890-3,079 GB/s) where trials of ten gave 3,051-3,111 (docs/perf-notes.md,
  "eleventh"). Batch-1 decode must stream every weight once per token, so
  ``bytes_per_decode_step * tok/s / bandwidth`` is the fraction of the
  memory roofline a decoder reaches.
* matmul rate: an n x n x n ``torch.matmul`` on random data (power, and on
  some GPUs clocks, depend on the bit patterns; zeros would flatter it);
  ``2 n^3 / time``. Prefill is compute bound, so
  ``flops_per_token * tok/s / matmul rate`` is its fraction.

Both take the best of several trials: a ceiling is what the hardware can be
shown to do, not its average. A benchmark measures them before and after its
timed runs and keeps the better of each (``best_of``): on the lent H100 a
process's read trials sit in one of two states ~1% apart, ~3,070 or ~3,105
GB/s, whichever buffer they read, and a process can change state within
seconds (docs/perf-notes.md, twenty-sixth). One measurement taken in the low
state would flatter every decode fraction of its run by up to 1%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from ..config import ModelConfig
from .timing import best_trial_seconds

TRIALS = 5


@dataclass(frozen=True)
class Setup:
    bandwidth_bytes: int
    reads_per_trial: int
    matmul_size: int
    matmul_dtype: torch.dtype
    matmuls_per_trial: int

    @property
    def matmul_dtype_name(self) -> str:
        return str(self.matmul_dtype).removeprefix("torch.")


GPU_SETUP = Setup(bandwidth_bytes=2 << 30, reads_per_trial=10, matmul_size=8192, matmul_dtype=torch.bfloat16,
                  matmuls_per_trial=10)
# A CPU has no fast bf16 matmul: measure float32, and say so in the result.
CPU_SETUP = Setup(bandwidth_bytes=256 << 20, reads_per_trial=1, matmul_size=1024, matmul_dtype=torch.float32,
                  matmuls_per_trial=2)


@dataclass(frozen=True)
class Ceilings:
    read_bandwidth_gbs: float
    matmul_tflops: float
    matmul_dtype: str
    matmul_size: int
    bandwidth_buffer_bytes: int
    device: str
    reads_per_trial: int
    # Each measurement's values, in order, where these are the best of several (best_of).
    read_bandwidth_each_gbs: tuple[float, ...] = ()
    matmul_each_tflops: tuple[float, ...] = ()

    def to_json(self) -> dict:
        d = asdict(self)
        # The schema names the field after the GPU case; on a CPU the dtype
        # field says what was really measured.
        d["bf16_matmul_tflops"] = d.pop("matmul_tflops")
        d["read_bandwidth_each_gbs"] = list(self.read_bandwidth_each_gbs or (self.read_bandwidth_gbs,))
        d["matmul_each_tflops"] = list(self.matmul_each_tflops or (self.matmul_tflops,))
        measurements = len(d["read_bandwidth_each_gbs"])
        d["method"] = (f"read: best of {TRIALS} trials of {self.reads_per_trial} sums over a "
                       f"{self.bandwidth_buffer_bytes} byte buffer; matmul: best of {TRIALS} trials of "
                       f"{self.matmul_size}^3 {self.matmul_dtype} torch.matmul on random data"
                       + (f"; the best of {measurements} such measurements (*_each: before and after the "
                          "timed runs)" if measurements > 1 else ""))
        return d


def best_of(*measured: Ceilings) -> Ceilings:
    """Ceilings measured several times in one run, each the best seen, with
    every measurement's values kept."""
    reads = tuple(c.read_bandwidth_gbs for c in measured)
    rates = tuple(c.matmul_tflops for c in measured)
    return replace(measured[0], read_bandwidth_gbs=max(reads), matmul_tflops=max(rates),
                   read_bandwidth_each_gbs=reads, matmul_each_tflops=rates)


def read_bandwidth(device: torch.device, setup: Setup) -> float:
    """Bytes per second that full reads of a float32 buffer of ``setup.bandwidth_bytes``
    reach, ``setup.reads_per_trial`` reads a trial."""
    x = torch.randn(setup.bandwidth_bytes // 4, dtype=torch.float32, device=device)

    def trial() -> None:
        for _ in range(setup.reads_per_trial):
            x.sum()

    return x.numel() * x.element_size() * setup.reads_per_trial / best_trial_seconds(device, trial, TRIALS)


def matmul_rate(device: torch.device, setup: Setup) -> float:
    """FLOP/s of an n^3 matmul (n = ``setup.matmul_size``) on random operands."""
    n, dtype = setup.matmul_size, setup.matmul_dtype
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, dtype=dtype, device=device, generator=gen)
    b = torch.randn(n, n, dtype=dtype, device=device, generator=gen)
    out = torch.empty(n, n, dtype=dtype, device=device)

    def trial() -> None:
        for _ in range(setup.matmuls_per_trial):
            torch.matmul(a, b, out=out)

    return 2.0 * n ** 3 * setup.matmuls_per_trial / best_trial_seconds(device, trial, TRIALS)


def setup_for(device: torch.device) -> Setup:
    return GPU_SETUP if device.type == "cuda" else CPU_SETUP


def measure(device: torch.device) -> Ceilings:
    setup = setup_for(device)
    bandwidth = read_bandwidth(device, setup)
    rate = matmul_rate(device, setup)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Ceilings(read_bandwidth_gbs=bandwidth / 1e9, matmul_tflops=rate / 1e12,
                    matmul_dtype=setup.matmul_dtype_name,
                    matmul_size=setup.matmul_size, bandwidth_buffer_bytes=setup.bandwidth_bytes,
                    device=str(device), reads_per_trial=setup.reads_per_trial)


def kv_bytes_per_position(config: ModelConfig, weight_bytes: int) -> int:
    """Bytes of keys and values one cached position adds to a decode step's reads."""
    return 2 * len(config.attention_layers) * config.kv_size * weight_bytes


def decode_bytes_per_token(config: ModelConfig, mean_context: float, weight_bytes: int) -> float:
    """The decode floor: weights and DeltaNet layers' state (``decode_bytes_per_step``)
    plus the KV cache at the mean context length of the timed steps, which
    matters at depth (tg128@32768)."""
    return (config.decode_bytes_per_step(weight_bytes)
            + kv_bytes_per_position(config, weight_bytes) * mean_context)


def decode_fraction(bytes_per_token: float, tok_s: float, ceilings: Ceilings) -> float:
    return bytes_per_token * tok_s / (ceilings.read_bandwidth_gbs * 1e9)


def prefill_fraction(flops_per_token: float, tok_s: float, ceilings: Ceilings) -> float:
    return flops_per_token * tok_s / (ceilings.matmul_tflops * 1e12)


def with_fraction(entry: dict, ceilings: Ceilings) -> dict:
    """A result entry with its ``roofline_fraction`` against ``ceilings``, from
    the per-token work it records (None where it did not run)."""
    if entry.get("skipped") is not None:
        return entry | {"roofline_fraction": None}
    if "bytes_per_token" in entry:
        return entry | {"roofline_fraction": decode_fraction(entry["bytes_per_token"], entry["tok_s_median"], ceilings)}
    return entry | {"roofline_fraction": prefill_fraction(entry["flops_per_token"], entry["tok_s_median"], ceilings)}
