"""Synchronised timing: CUDA events on a GPU, a monotonic clock on the CPU.

The device is synchronised before a timed region starts, so the region
measures only its own work (host overhead included: with an idle GPU the
start event fires when the host records it), and the end event is waited on
before the time is read.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], T]) -> tuple[T, float]:
    """Run ``work()`` once; return its result and the seconds it took."""
    synchronize(device)
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(device)
        start.record(stream)
        out = work()
        end.record(stream)
        end.synchronize()
        return out, start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    out = work()
    return out, time.perf_counter() - t0


def best_trial_seconds(device: torch.device, trial: Callable[[], object], trials: int) -> float:
    """The shortest of ``trials`` timed runs of ``trial``, after one untimed warm-up run."""
    trial()
    return min(timed(device, trial)[1] for _ in range(trials))
