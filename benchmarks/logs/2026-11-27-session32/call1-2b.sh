#!/usr/bin/env bash
# Call 1: the Qwen3.5-2B config on the H100, never benchmarked before.
# Stage 9 of scripts/gpu_suite.sh (megakernel, transformers eager, llama.cpp on
# one random-weight 2B checkpoint, tg128 and pp520), then the kernel's own timing
# of the 2B at grid 128 (the H100 rule) and 132 (all SMs), each in a process of
# its own: the grid rule was measured only on the 0.8B.
set -uo pipefail
STEPS="1 9" MEGADELTA_COMMIT=${MEGADELTA_COMMIT:?} OUT=$OUT bash scripts/gpu_suite.sh
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache
for grid in 128 132; do
    timeout 100 python3 -m megadelta.kernels.timing --config qwen3.5-2b --depths 0 --reps 5 \
        --grid $grid --out "$OUT/timing-2b-grid$grid.json" 2>&1 | tail -4 | tee -a "$OUT/timing-2b.txt"
done
