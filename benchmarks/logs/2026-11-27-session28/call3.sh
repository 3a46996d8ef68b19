#!/usr/bin/env bash
# Call 3: tg128 by way of loading, one process each, two rounds (probe_engine_gap.py), and the benchmark itself.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 -c "from megadelta.checkpoint import default_checkpoint; default_checkpoint()"
for round in 1 2; do
    for mode in standalone engine engine-ref; do
        timeout 120 python3 benchmarks/logs/2026-11-27-session28/probe_engine_gap.py $mode 2>&1 | tail -1
    done
    timeout 150 python3 -m megadelta.bench -p 0 -n 128 --systems megadelta-megakernel --output "$OUT/bench" 2>&1 \
        | grep -E "tg128:" | sed "s/^/bench: /"
done 2>&1 | tee "$OUT/call3-engine-gap.txt"
