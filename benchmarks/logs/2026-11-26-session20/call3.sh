# A/B: main (allocator's placement + 5 spread copies, timed) against the tree
# (copies with their middle on an 8 KB boundary: 6 timed, or 1 untimed).
export MEGADELTA_CACHE=/tmp/mc PYTHONUNBUFFERED=1
ROOT=$PWD
for r in 1 2 3; do for entry in "probe_m 6" "tree 6" "tree 1"; do
  set -- $entry; dir=$1 n=$2; [ $dir = tree ] && dir=$ROOT || dir=$ROOT/$dir
  (cd $dir && PYTHONPATH=$dir timeout 100 python3 -m megadelta.kernels.timing --depths 0 --reps 5 --placement-candidates $n --out /tmp/t.json >/dev/null 2>/tmp/t.log) || tail -3 /tmp/t.log
  python3 -c "
import json; d=json.load(open('/tmp/t.json')); p=d['placement_seconds']
print('round $r $entry', round(d['default']['tg128@0']['tok_s'],1), round(d['floor_tok_s'],1), {k:[round(32/x) for x in v] for k,v in p.items()})"
  rm -f /tmp/t.json
done; done
