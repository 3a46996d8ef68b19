#!/usr/bin/env bash
# Session 23, call 1: the cost of publishing tokens (one build, on/off), then
# tg128 of main against three forms of the argmax without a grid barrier.
set -uo pipefail
export PYTHONUNBUFFERED=1
L=benchmarks/logs/2026-11-27-session23
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv | tee "$OUT/gpu.txt"
(cd probe_m && MEGADELTA_CACHE=/tmp/mdc-m PYTHONPATH=$PWD timeout 120 python3 ../$L/probe_publish.py) 2>&1 | tee "$OUT/publish.txt"
ENTRIES="probe_m|;tree|;probe_ve2|;probe_w2n|" ROUNDS=3 DEPTHS=0 OUT= timeout 470 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/ab.txt"
