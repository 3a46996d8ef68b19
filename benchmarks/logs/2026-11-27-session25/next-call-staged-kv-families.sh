#!/usr/bin/env bash
# Ready for the next session (not run): STAGED_KV (the attention item's cached
# keys and values copied into shared memory before the block waits for the
# layer input; candidate (a) of perf-notes "twenty-first") against main, under
# the three ptxas families on each side. The tree without the option builds
# main's SASS (0 instructions differ, NVRTC 13.0); with it every loop is
# rescheduled, so one family a side would measure the draw. The staged path
# runs where a chunk has at most 16 positions (contexts up to 1,024: tg128);
# CPU emulation matches the reference there and on the unstaged path (grid 2
# and 3, contexts 9-40); no spills for 0.8B (sm_90a, sm_80), 2B, grouped-v.
# Prediction: one loaded L2 round trip off each attention item, ~0.7-1 us of
# each attention layer's 6.3 us core: +0.7-1%. ~8 minutes.
# Set up here first, then carry ["probe_kv"]:
#   rm -rf probe_kv && mkdir probe_kv && git archive HEAD megadelta | tar -x -C probe_kv
#   (cd probe_kv && patch -p1 < ../benchmarks/logs/2026-11-27-session25/candidate-staged-kv-option.patch)
# If it gains in every family: a second call with the option on by default in
# a copy of the tree (tests included: git archive HEAD megadelta tests), then
#   STEPS=5 GPU_TESTS=tests/gpu/test_megakernel.py scripts/gpu_suite.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_kv|;probe_kv|-DSTAGED_KV=1" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT= \
    timeout 590 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/staged-kv-families.txt"
