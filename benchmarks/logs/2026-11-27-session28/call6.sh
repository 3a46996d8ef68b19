#!/usr/bin/env bash
# Call 6: the host loop again (decode_greedy now returns at the last token), then the benchmarks at 8552c52.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
timeout 120 python3 benchmarks/logs/2026-11-27-session28/probe_host_loop.py 2>&1 | tail -3 | tee "$OUT/call6-host-loop.txt"
STEPS="1 2 4" MEGADELTA_COMMIT=8552c52789179eeefe36f06d34ae199876fbe5a1 OUT=$OUT bash scripts/gpu_suite.sh > "$OUT/suite-stdout.txt" 2>&1
grep -E "tok/s|FAILED|PASS" "$OUT/suite.log" | tail -30
