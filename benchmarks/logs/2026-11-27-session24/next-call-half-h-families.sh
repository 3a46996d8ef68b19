#!/usr/bin/env bash
# Ready for the next session (not run): HALF_H (h published as 4-byte words,
# bf16 and the tag's low 16 bits: every block polls 14 KB instead of 28 KB at
# the h hand-off, where this session's slow schedules lose; the patch of
# logs/2026-11-26-session14, rebased) under the three ptxas families on each
# side. The tree without the option builds main's SASS (0 instructions differ,
# NVRTC 13.0); with it, loops 1-5 and 10 stay identical and the rest are
# 0.98-0.995 similar. The ninth session timed it alone once, in one schedule
# (v32 in perf-notes): -1.6%. A probe: the 16-bit tag can alias after an
# early-stopped launch left a gap of a multiple of 65,536 tags (the host would
# have to bump the epoch past it), and the CPU emulation does not cover it. ~8
# minutes. Set up here first, then
# carry ["probe_hh"]:
#   rm -rf probe_hh && mkdir probe_hh && git archive HEAD megadelta | tar -x -C probe_hh
#   (cd probe_hh && patch -p1 < ../benchmarks/logs/2026-11-27-session24/candidate-half-h-option.patch)
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_hh|;probe_hh|-DHALF_H=1" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT= \
    timeout 590 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/half-h-families.txt"
