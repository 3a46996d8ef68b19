#!/usr/bin/env bash
# Call 3 (twenty-fifth session): the vectors every block waits for whole (x, x_mid,
# h, the mixer's output) written HANDOFF_REPLICAS times, block b polling copy
# b % R, so each copy's lines take 1/R of the grid's polls. R=1 is main's SASS
# exactly (sass_loops, NVRTC 13.0.88); R=2/4/8 reschedule the kernel (a new draw).
# Prediction: if the polls' queueing at each line's L2 slice is what makes a
# hand-off take ~1 us a round (~1,000 16-byte polls a line a round today), R=4
# gains >= 2% and R=8 at least as much; if not, all within the +-1-2% draw.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DHANDOFF_REPLICAS=2;tree|-DHANDOFF_REPLICAS=4;tree|-DHANDOFF_REPLICAS=8" ROUNDS=2 DEPTHS=0 \
    OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/call3-handoff-replicas.txt
