#!/usr/bin/env bash
# Call 3 (H100): the partials' merge with each warp's scales computed before
# its turn (candidate-merge-scales-first.patch: a turn is then 8 shared loads,
# 32 adds and 8 stores with no exponential and no branch; the turn loop went
# from 134 instructions to 56) against main (probe_main/, HEAD's megadelta),
# under the three ptxas families on each side, two rounds. All product loops
# are rescheduled (sass_loops), so one family a side would measure the draw.
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_main|;tree|" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT= \
    timeout 540 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/merge-scales-families.txt"
