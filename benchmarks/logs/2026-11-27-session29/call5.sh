#!/usr/bin/env bash
# Call 5 (twenty-fifth session): DOWN_AS_H_ARRIVES, the MLP's down product
# multiplying each 256-column chunk of h as soon as the chunk is in shared memory,
# while the block still polls the rest (mlp.cuh). Default builds main's SASS;
# the option re-draws the schedule, so both sides under two ptxas families.
# Prediction: the ~1.3 us a layer from "h seen" to "W_down done" (stage clock,
# eighteenth session) shrinks by 0.5-1 us: +2-4% if it carries into tg128,
# against a draw of +-2%.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DDOWN_AS_H_ARRIVES=1" FAMILIES="4 8" ROUNDS=2 DEPTHS=0 \
    OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/call5-down-as-h-arrives.txt
