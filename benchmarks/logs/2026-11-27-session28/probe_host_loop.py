"""Where do the ~0.45 ms go between a bare greedy launch and decode_greedy
(session 28, calls 1 and 2)? One process, random 0.8B weights, 128 greedy
tokens from position 0, each way timed as the benchmark times decode_greedy
(events around the whole call), taken in turn round after round:

  kernel     the launch alone: events right around it, tokens published
  sync       decode_greedy's set-up and launch, then stream.synchronize(), then the tokens
  spin       decode_greedy's loop without its sleep
  sleep      decode_greedy as it is (sleeps POLL_SECONDS between polls)
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
b = MegakernelBackend(QWEN35_0_8B, random_weights(QWEN35_0_8B, seed=0, device=dev), dev, prefill="reference")
stream = torch.cuda.current_stream(dev)
state = b.new_state(130)
N = 128
b.tokens = driver.MappedInts(N)   # decode_greedy grows it on first use; the other ways publish into it too


def launch() -> None:
    b.buffers.set_stop_ids(set())
    b._launch(1, state, n_steps=N, logits=False, publish=True)


def kernel() -> float:
    args = b.buffers.params(state, 1, N, barrier=_ptr(b.barrier), progress=b.progress.device_ptr,
                            tokens_out=b.tokens.device_ptr, logits=False, shared_bytes=b.shared_bytes)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    b.kernel.launch_cooperative(b.grid, BLOCK_THREADS, b.shared_bytes, stream.cuda_stream, args)
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def sync_way():
    stream.synchronize()
    launch()
    stream.synchronize()
    yield from list(b.tokens.values[:b.progress.values[0]])


def polling_way(sleep: bool):
    stream.synchronize()
    launch()
    seen = 0
    while True:
        done = driver.stream_done(stream.cuda_stream)
        published = b.progress.values[0]
        while seen < published:
            yield b.tokens.values[seen]
            seen += 1
        if done:
            break
        if sleep:
            time.sleep(POLL_SECONDS)
    stream.synchronize()


ways = {
    "kernel": kernel,
    "sync": lambda: timed(dev, lambda: list(sync_way()))[1],
    "spin": lambda: timed(dev, lambda: list(polling_way(False)))[1],
    "sleep": lambda: timed(dev, lambda: list(polling_way(True)))[1],
    "decode_greedy": lambda: timed(dev, lambda: list(b.decode_greedy(1, state, N, set())))[1],
}
seconds = {k: [] for k in ways}
for r in range(12):
    for name, way in ways.items():
        state.reset()
        torch.cuda.synchronize()
        s = way()
        if r >= 2:
            seconds[name].append(s)
print(json.dumps(seconds))
print(json.dumps({k: round(N / statistics.median(v), 1) for k, v in seconds.items()}, indent=1))
print(json.dumps({k: round((statistics.median(v) - statistics.median(seconds["kernel"])) * 1e6) for k, v in seconds.items()}))
