"""One greedy decode launch to run under Nsight Compute (used by scripts/gpu_suite.sh).

    ncu --clock-control none -k regex:megadelta_decode --launch-skip 1 --launch-count 1 \\
        --section WarpStateStats --section SourceCounters -o decode \\
        python3 -m megadelta.kernels.profile [--steps 16] [--option=-DX=1 ...]

Random weights; the first launch is a warm-up (the one ncu skips), the second
decodes `--steps` tokens from a 1-token context. The profiler's warp-state
samples say where the warps of the step wait (barriers, memory, instruction
fetch), which the stage clock (timing --stages) cannot see.
"""

from __future__ import annotations

import argparse

import torch

from ..checkpoint import random_weights
from ..config import PRESETS
from ..megakernel import MegakernelBackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="qwen3.5-0.8b", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--option", action="append", default=[], metavar="OPTION",
                        help="an NVRTC option for the build, e.g. --option=-DPAGES_IN_FLIGHT=2")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = PRESETS[args.config]
    weights = random_weights(config, seed=1, device=device)
    backend = MegakernelBackend(config, weights, device, prefill="reference", kernel_options=tuple(args.option))
    state = backend.new_state(args.steps + 2)
    for _ in range(2):   # warm-up, then the profiled launch
        state.position = 0
        list(backend.decode_greedy(1, state, args.steps, set()))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
