#!/usr/bin/env bash
# Call 4: where the host loop's time goes (probe_host_loop.py); the benchmark's tg128 with and without pp8192 before it.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
mkdir -p "$OUT"
timeout 200 python3 benchmarks/logs/2026-11-27-session28/probe_host_loop.py 2>&1 | tail -20 | tee "$OUT/call4-host-loop.txt"
python3 -c "from megadelta.checkpoint import default_checkpoint; default_checkpoint()"
for p in 8192 0 8192 0; do
    timeout 150 python3 -m megadelta.bench -p $p -n 128 --systems megadelta-megakernel --output "$OUT/bench" 2>&1 \
        | grep -E "tg128:|pp8192:" | sed "s/^/bench -p $p: /"
done 2>&1 | tee "$OUT/call4-order.txt"
