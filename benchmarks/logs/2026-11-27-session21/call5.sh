# Call 5: which grid, once more, on main (6cfc08b: 128 by default): 128
# against 130 (every layer product's longest share as at 132, the DeltaNet
# in_proj's too) and 132, three rounds, each in a process of its own.
export PYTHONUNBUFFERED=1 MEGADELTA_CACHE=/tmp/mc
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for r in 1 2 3; do for grid in 128 130 132; do
  timeout 120 python3 -m megadelta.kernels.timing --grid $grid --depths 0 --reps 5 --out /tmp/t.json >/dev/null 2>/tmp/t.log || tail -3 /tmp/t.log
  python3 -c "
import json; d=json.load(open('/tmp/t.json'))
print('round $r | grid', d['grid'], '|', round(d['default']['tg128@0']['tok_s'], 1), '| floor', round(d['floor_tok_s'], 1))"
  rm -f /tmp/t.json
done; done
