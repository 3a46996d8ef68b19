#!/usr/bin/env bash
# Call 2: tg128 against the KV cache's capacity, and publishing on/off (probe_context_capacity.py).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
timeout 280 python3 benchmarks/logs/2026-11-27-session28/probe_context_capacity.py > "$OUT/call2-context-capacity.txt" 2>&1
tail -12 "$OUT/call2-context-capacity.txt"
