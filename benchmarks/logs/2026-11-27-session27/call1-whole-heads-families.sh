#!/usr/bin/env bash
# Call 1 (H100): whole heads (the attention core as a block per query head
# while the cache holds at most 128 positions, no combine) against the split,
# under the three ptxas families on each side. One tree: with
# -DWHOLE_HEAD_MAX_POSITIONS=0 it builds main's SASS (sass_loops: 0 of 12,448
# instructions differ, NVRTC 13.0); without, all loops but one are rescheduled
# and a 634-instruction position loop is added. The smoke check first (16
# steps against the reference on the whole-heads path, watchdog).
set -uo pipefail
export PYTHONUNBUFFERED=1
PYTHONPATH=$PWD timeout 120 python3 -m megadelta.kernels.smoke 2>&1 | tail -12 | tee "$OUT/smoke.txt"
ENTRIES="tree|-DWHOLE_HEAD_MAX_POSITIONS=0;tree|" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT= \
    timeout 470 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/whole-heads-families.txt"
