# Call 4: call 3's grid of 128 blocks (+0.7% there, two rounds) against main
# (132 on the H100), four rounds, each in a process of its own. (Its first
# run printed nothing: the summary line indexed a float entry of the JSON.)
export PYTHONUNBUFFERED=1
ROOT=$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for r in 1 2 3 4; do for entry in "probe_m 0" "probe_g 128"; do
  set -- $entry; dir=$ROOT/$1 grid=$2
  [ $grid = 0 ] && unset PROBE_GRID || export PROBE_GRID=$grid
  (cd $dir && MEGADELTA_CACHE=/tmp/mc-$1 PYTHONPATH=$dir timeout 120 python3 -m megadelta.kernels.timing --depths 0 --reps 5 --out /tmp/t.json >/dev/null 2>/tmp/t.log) || tail -3 /tmp/t.log
  python3 -c "
import json; d=json.load(open('/tmp/t.json'))
print('round $r | $entry |', round(d['default']['tg128@0']['tok_s'], 1), '| floor', round(d['floor_tok_s'],1))"
  rm -f /tmp/t.json
done; done
