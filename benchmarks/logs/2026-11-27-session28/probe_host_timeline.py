"""Split decode_greedy's time as the benchmark sees it (session 28, call 5):
events on the stream at the timed region's start, just before and just after
the launch (the latter completes when the kernel does), and at the region's
end, so that GPU time = before-launch + kernel + after-kernel. 128 greedy
tokens from position 0, random 0.8B weights, 12 runs (the first 2 dropped).
The loop is decode_greedy's own, with its events added.
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.kernels import driver
from megadelta.megakernel import POLL_SECONDS, MegakernelBackend

dev = torch.device("cuda")
b = MegakernelBackend(QWEN35_0_8B, random_weights(QWEN35_0_8B, seed=0, device=dev), dev, prefill="reference")
stream = torch.cuda.current_stream(dev)
state = b.new_state(130)
N = 128
b.tokens = driver.MappedInts(N)


def event():
    e = torch.cuda.Event(enable_timing=True)
    e.record(stream)
    return e


def run() -> dict:
    state.reset()
    torch.cuda.synchronize()
    host = {"t0": time.perf_counter()}
    start = event()
    b._check_state(state)
    stream.synchronize()
    host["synchronized"] = time.perf_counter()
    b.buffers.set_stop_ids(set())
    pre = event()
    b._launch(1, state, n_steps=N, logits=False, publish=True)
    post = event()
    host["launched"] = time.perf_counter()
    seen = 0
    while True:
        done = driver.stream_done(stream.cuda_stream)
        published = b.progress.values[0]
        if published == N and "last_token" not in host:
            host["last_token"] = time.perf_counter()
        seen = published
        if done:
            host["done"] = time.perf_counter()
            break
        if seen < N:
            time.sleep(POLL_SECONDS)
    stream.synchronize()
    end = event()
    end.synchronize()
    host["end"] = time.perf_counter()
    ms = lambda a, z: a.elapsed_time(z) * 1e3   # us
    return {"gpu_before_launch_us": ms(start, pre), "gpu_kernel_us": ms(pre, post), "gpu_after_kernel_us": ms(post, end),
            "gpu_total_us": ms(start, end)} | {f"host_{k}_us": (v - host["t0"]) * 1e6 for k, v in host.items()}


runs = [run() for _ in range(12)][2:]
print(json.dumps(runs))
print(json.dumps({k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}, indent=1))
