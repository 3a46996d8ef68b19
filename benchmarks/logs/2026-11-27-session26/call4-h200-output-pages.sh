#!/usr/bin/env bash
# Call 4 (the machine start of call 3): grid 128, grid 128 built with
# -DOUTPUT_PAGES_IN_FLIGHT=12, and grid 132, two rounds, each timing in a
# process of its own.
set -uo pipefail
export PYTHONUNBUFFERED=1
for r in 1 2; do for e in "default|" "default|-DOUTPUT_PAGES_IN_FLIGHT=12" "132|"; do
  g=${e%%|*} o=${e#*|}
  args=(); [ "$g" = default ] || args=(--grid "$g")
  MEGADELTA_CACHE=/tmp/mc-grid timeout 150 python3 -m megadelta.kernels.timing --depths 0 --reps 5 \
      "${args[@]}" --options="$o" --out /tmp/t.json >/dev/null 2>/tmp/t.log || { tail -3 /tmp/t.log; continue; }
  python3 -c "
import json; d=json.load(open('/tmp/t.json'))
print('round $r | grid', d['grid'], '| $o |', round(d['default']['tg128@0']['tok_s'], 1), '| floor', round(d['floor_tok_s'], 1))"
done; done
