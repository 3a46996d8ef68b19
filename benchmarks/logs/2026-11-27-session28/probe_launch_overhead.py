"""What a greedy generation costs beyond its steps (session 28).

Times, in one process on random 0.8B weights:
- kernel: one greedy launch of n steps, CUDA events recorded right before the
  launch call and right after it (no host polling), for several n; the fit
  seconds = fixed + n * step gives the launch's fixed cost;
- host loop: the whole decode_greedy generator as the benchmark times it
  (events around list(decode_greedy(...))), with the current polling (no sleep
  once the last token is out) and with the old one (a sleep after every poll),
  alternated at n = 128.
Prints a JSON line per measurement and a summary.
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from megadelta.bench.timing import timed
from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels import driver
from megadelta.kernels.codegen import BLOCK_THREADS
from megadelta.megakernel import POLL_SECONDS, MegakernelBackend, _ptr

dev = torch.device("cuda")
backend = MegakernelBackend(QWEN35_0_8B, random_weights(QWEN35_0_8B, seed=0, device=dev), dev, prefill="reference")
stream = torch.cuda.current_stream(dev)


def kernel_seconds(n: int) -> float:
    state = backend.new_state(n + 2)
    b = backend
    args = b.buffers.params(state, 1, n, barrier=_ptr(b.barrier), progress=b.progress.device_ptr,
                            tokens_out=0, logits=False, shared_bytes=b.shared_bytes)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    b.kernel.launch_cooperative(b.grid, BLOCK_THREADS, b.shared_bytes, stream.cuda_stream, args)
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def old_decode_greedy(token_id, state, n_steps, stop_ids):
    """decode_greedy before session 28: a new device copy of the stop ids and a sleep after every poll."""
    b = backend
    stream.synchronize()
    if b.tokens.n < n_steps:
        b.tokens = driver.MappedInts(n_steps)
    b.buffers.stop_ids = torch.tensor(sorted(stop_ids), dtype=torch.int32).to(dev)
    b.buffers.stop_id_list = None
    b._launch(token_id, state, n_steps=n_steps, logits=False, publish=True)
    seen = 0
    while True:
        done = driver.stream_done(stream.cuda_stream)
        published = b.progress.values[0]
        while seen < published:
            yield b.tokens.values[seen]
            seen += 1
        if done:
            break
        time.sleep(POLL_SECONDS)
    stream.synchronize()
    state.position += b.progress.values[0]


def generator_seconds(decode, n: int) -> float:
    state = backend.new_state(n + 2)
    return timed(dev, lambda: list(decode(1, state, n, set())))[1]


results = {"kernel": {}, "host": {"new": [], "old": []}}
for n in (1, 8, 32, 128, 512):
    kernel_seconds(n)
    results["kernel"][n] = [kernel_seconds(n) for _ in range(7)]
for _ in range(2):
    generator_seconds(backend.decode_greedy, 128)
    generator_seconds(old_decode_greedy, 128)
for _ in range(15):
    results["host"]["new"].append(generator_seconds(backend.decode_greedy, 128))
    results["host"]["old"].append(generator_seconds(old_decode_greedy, 128))
results["host"]["kernel_128"] = [kernel_seconds(128) for _ in range(15)]

med = {n: statistics.median(v) for n, v in results["kernel"].items()}
ns = sorted(med)
mean_n = sum(ns) / len(ns)
mean_t = sum(med.values()) / len(ns)
step = sum((n - mean_n) * (med[n] - mean_t) for n in ns) / sum((n - mean_n) ** 2 for n in ns)
fixed = mean_t - step * mean_n
summary = {
    "kernel_median_us": {n: med[n] * 1e6 for n in ns},
    "fit_step_us": step * 1e6, "fit_fixed_us": fixed * 1e6,
    "host_new_median_us": statistics.median(results["host"]["new"]) * 1e6,
    "host_old_median_us": statistics.median(results["host"]["old"]) * 1e6,
    "kernel_128_median_us": statistics.median(results["host"]["kernel_128"]) * 1e6,
}
print(json.dumps({"raw": results}))
print(json.dumps(summary, indent=1))
