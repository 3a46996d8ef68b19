#!/usr/bin/env bash
# Call 2 (twenty-sixth session): placement_probe.py in three processes: the read
# ceiling by buffer (4 x 2 GiB held at once), tg128 by the tied embedding's copy
# (4) and by the layer matrices' copy (3), each placement timed in two
# interleaved passes. Prediction: if the ceiling's two process modes (call 1)
# are where its buffer lies, buffers in one process differ by ~1%; and if the
# weights' placement moves tg128 the same way, their copies differ by ~1% too
# (a placement search at load, like x_mid's, would then be worth ~0.5%).
set -uo pipefail
L=benchmarks/logs/2026-11-27-session30
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
for i in 1 2 3; do timeout 200 python3 $L/placement_probe.py; done 2>&1 | grep -v Warning | tee $OUT/placement.jsonl
