#!/usr/bin/env bash
# Session 23, call 2: do the early polls of o (DeltaNet gated norm) and of the
# attention partials (combine) slow the step? Blocks without an item sleep
# before their first poll (probe-first-poll-delay.patch; one binary, the
# delays from constant memory), each setting in a process of its own.
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv | tee "$OUT/call2-gpu.txt"
ENTRIES="tree|;tree|-DPROBE_O_DELAY_NS=1000;tree|-DPROBE_O_DELAY_NS=2000;tree|-DPROBE_COMBINE_DELAY_NS=3000;tree|-DPROBE_COMBINE_DELAY_NS=6000" \
    ROUNDS=2 DEPTHS=0 OUT= timeout 540 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/call2-ab.txt"
