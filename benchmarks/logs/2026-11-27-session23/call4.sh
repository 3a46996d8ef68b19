#!/usr/bin/env bash
# Session 23, call 4: main against the first-poll-delay probe tree with its
# delays at 0 (semantically main: two nanosleep(0) and a constant load more;
# sass_loops: loops 1, 5, 6, 9, 10 rescheduled), in the same call: is call 2's
# lower level (1,555-1,573) the probe's code or the machine start?
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv | tee "$OUT/call4-gpu.txt"
ENTRIES="probe_m|;probe_pd|" ROUNDS=3 DEPTHS=0 OUT= timeout 420 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/call4-ab.txt"
