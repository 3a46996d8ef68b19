#!/usr/bin/env bash
# Call 4: what a grid of 120 blocks costs the current kernel. A cluster design
# (DeltaNet heads owned by clusters of 4 or 8 blocks, the one structural change
# left in docs/perf-ideas.md) can keep only 120 blocks co-resident on the H100,
# 112 at cluster size 16 (twenty-second session), and was estimated at +1-2%
# before that cost. Grids 128, 120 and 112, each in a process of its own, two rounds.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache PYTHONUNBUFFERED=1
for round in 1 2; do
    for grid in 128 120 112; do
        timeout 100 python3 -m megadelta.kernels.timing --depths 0 --reps 5 --grid $grid --out /tmp/t.json >/dev/null 2>&1
        python3 - $round $grid <<'PY' | tee -a $OUT/grid-120.txt
import json, sys
d = json.load(open("/tmp/t.json"))
r = d["default"]["tg128@0"]
print(f"round {sys.argv[1]} | grid {sys.argv[2]} | tg128 {r['tok_s']:.1f} | {100 * r['fraction_of_floor']:.1f}% of {d['read_bandwidth_gbs']:.0f} GB/s")
PY
        rm -f /tmp/t.json
    done
done
