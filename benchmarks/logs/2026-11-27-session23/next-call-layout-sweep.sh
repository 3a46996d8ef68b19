#!/usr/bin/env bash
# Ready for the next session (not run): does the code's layout alone move tg128?
# probe-layout-pad.patch puts PROBE_LAYOUT_PAD instructions (nanosleep 0, run
# once a launch) at the kernel's start: every instruction after them moves by
# 16 bytes each, and nothing else changes. Checked without a GPU: PAD 0 is
# byte for byte main's SASS, and for PAD 1-64 the whole SASS is main's but for
# the pad; every loop is identical, only shifted. If the builds differ by more
# than the rounds' spread, layout is the ~2.5% that the dead edit of calls 4-5
# lost, and candidates must be compared over several pads. ~7 minutes.
# Set up here first, then carry ["probe_lp"]:
#   rm -rf probe_lp && mkdir probe_lp && git archive HEAD megadelta | tar -x -C probe_lp
#   (cd probe_lp && patch -p1 < ../benchmarks/logs/2026-11-27-session23/probe-layout-pad.patch)
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_lp|;probe_lp|-DPROBE_LAYOUT_PAD=2;probe_lp|-DPROBE_LAYOUT_PAD=4;probe_lp|-DPROBE_LAYOUT_PAD=6;probe_lp|-DPROBE_LAYOUT_PAD=8" \
    ROUNDS=2 DEPTHS=0 OUT= timeout 520 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/layout-sweep.txt"
