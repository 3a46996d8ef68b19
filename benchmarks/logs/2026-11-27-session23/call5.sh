#!/usr/bin/env bash
# Session 23, call 5: the first-poll delay again, now behind a branch on the
# constant (call 4: nanosleep(0) itself cost 2.9%), against main.
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_m|;probe_pd2|;probe_pd2|-DPROBE_O_DELAY_NS=2000" ROUNDS=2 DEPTHS=0 OUT= timeout 300 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/call5-ab.txt"
