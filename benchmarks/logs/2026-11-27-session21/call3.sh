# Call 3: the grid size (never swept): tg128 with the grid capped at 128, 124
# and 116 blocks (probe_g: main with PROBE_GRID and COMBINE_LANES as a build
# option; below 128 blocks the combine's 2,048 outputs need 8 lanes each to
# stay one round), each build in a process of its own, two rounds.
export PYTHONUNBUFFERED=1
ROOT=$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for r in 1 2; do for entry in "probe_m 0 -" "probe_g 128 -" "probe_g 124 -DCOMBINE_LANES=8" "probe_g 116 -DCOMBINE_LANES=8" "probe_g 132 -DCOMBINE_LANES=8"; do
  set -- $entry; dir=$ROOT/$1 grid=$2 opt=$3; [ "$opt" = - ] && opt=
  [ $grid = 0 ] && unset PROBE_GRID || export PROBE_GRID=$grid
  (cd $dir && MEGADELTA_CACHE=/tmp/mc-$1 PYTHONPATH=$dir timeout 120 python3 -m megadelta.kernels.timing --options="$opt" --depths 0 --reps 5 --out /tmp/t.json >/dev/null 2>/tmp/t.log) || tail -3 /tmp/t.log
  python3 -c "
import json; d=json.load(open('/tmp/t.json'))
print('round $r | $entry |', round(d['default']['tg128@0']['tok_s'],1), '| floor', round(d['floor_tok_s'],1))"
  rm -f /tmp/t.json
done; done
