"""A one-minute check that the megakernel builds and runs on this GPU.

    python3 -m megadelta.kernels.smoke

Uses the 0.8B layer shapes with 4 layers and a small vocabulary (fast random
weights). Prints each phase with its time; runs the kernel on a side stream
under a watchdog, so a step that never finishes is reported with the grid
barrier's counter (which barrier, how many blocks arrived) instead of hanging;
then compares 16 steps of logits with the float32 reference and runs a greedy
launch. Exit status 0 when everything passed.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from ..checkpoint import random_weights
from ..config import ATTENTION, DELTANET, QWEN35_0_8B
from ..model import Qwen35Model

SMOKE_CONFIG = QWEN35_0_8B.replace(vocab_size=8192, num_hidden_layers=4,
                                   layer_types=(DELTANET, DELTANET, DELTANET, ATTENTION), name="smoke")
WATCHDOG_SECONDS = 30.0
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.2f} s] {msg}", flush=True)


def wait_or_report(backend, work_stream: torch.cuda.Stream) -> None:
    """Wait for ``work_stream``; if it runs past the watchdog, print the barrier state and exit."""
    deadline = time.perf_counter() + WATCHDOG_SECONDS
    while not work_stream.query():
        if time.perf_counter() > deadline:
            spy = torch.cuda.Stream()
            counter = torch.empty(2, dtype=torch.int64, pin_memory=True)
            with torch.cuda.stream(spy):
                counter.copy_(backend.barrier[:2], non_blocking=True)
            spy.synchronize()
            arrivals = int(counter[0])
            say(f"HUNG: barrier counter {arrivals} = barrier #{arrivals // backend.grid} of this backend's life "
                f"with {arrivals % backend.grid} of {backend.grid} blocks arrived; "
                f"host progress word {backend.progress.values[0]}")
            os._exit(2)
        time.sleep(0.01)


def main() -> int:
    from ..megakernel import MegakernelBackend

    device = torch.device("cuda")
    say(f"device {torch.cuda.get_device_name(device)}")
    weights = random_weights(SMOKE_CONFIG, seed=int(time.time()), device=device)
    say("random weights ready")
    backend = MegakernelBackend(SMOKE_CONFIG, weights, device, prefill="reference")
    say(f"backend built: arch {backend.arch}, grid {backend.grid} blocks")
    ref = Qwen35Model(SMOKE_CONFIG, weights, dtype=torch.float32, device=device)
    ks, rs = backend.new_state(64), ref.new_state(64)
    prompt = [5, 17, 4000, 123]
    token = int(ref.prefill(prompt, rs).argmax())
    ks.copy_from(rs)   # decode alone is compared
    torch.cuda.synchronize()
    say("prefill done (float32 reference; its state handed to the kernel)")

    side = torch.cuda.Stream()
    worst = 0.0
    for step in range(16):
        with torch.cuda.stream(side):
            got = backend.decode(token, ks)
        wait_or_report(backend, side)
        want = ref.decode(token, rs)
        err = float((got - want).norm() / want.norm())
        worst = max(worst, err)
        if step == 0:
            say(f"first step finished, logits rel err {err:.3g}")
        token = int(want.argmax())
    say(f"16 steps: worst logits rel err {worst:.3g} (tolerance 2e-2)")

    say("greedy launch of 16 steps (publishes through host-mapped memory)")
    with torch.cuda.stream(side):
        tokens = list(backend.decode_greedy(token, ks, 16, set()))
    say(f"greedy launch: {len(tokens)} tokens {tokens[:8]}..., position {ks.position}")
    ok = worst <= 2e-2 and len(tokens) == 16 and ks.position == len(prompt) + 16 + 16
    say("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
