#!/usr/bin/env bash
# Call 3: the grid rule (the co-resident blocks rounded down to a multiple of 8)
# on an H200: its default 128 blocks against all 132 SMs, three rounds, each
# timing in a process of its own (megadelta.kernels.timing, tg128 at depth 0).
# On the H100 128 won by 0.6-0.7% (seventeenth session).
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for r in 1 2 3; do for grid in default 132; do
  args=(); [ "$grid" = default ] || args=(--grid "$grid")
  MEGADELTA_CACHE=/tmp/mc-grid timeout 150 python3 -m megadelta.kernels.timing --depths 0 --reps 5 \
      "${args[@]}" --out /tmp/t.json >/dev/null 2>/tmp/t.log || { tail -3 /tmp/t.log; continue; }
  python3 -c "
import json; d=json.load(open('/tmp/t.json'))
print('round $r | grid', d['grid'], '|', round(d['default']['tg128@0']['tok_s'], 1), '| floor', round(d['floor_tok_s'], 1))"
  rm -f /tmp/t.json
done; done
