#!/usr/bin/env bash
# Call 1: the launch-overhead probe, then the benchmarks (gpu_suite steps 1, 2, 4) at 477d770.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
timeout 150 python3 benchmarks/logs/2026-11-27-session28/probe_launch_overhead.py > "$OUT/call1-launch-overhead.txt" 2>&1
tail -25 "$OUT/call1-launch-overhead.txt"
STEPS="1 2 4" MEGADELTA_COMMIT=477d7702532c07d89117c5b716088047ff0cc960 OUT=$OUT bash scripts/gpu_suite.sh > "$OUT/suite-stdout.txt" 2>&1
grep -E "tok/s|FAILED|PASS" "$OUT/suite.log" | tail -30
