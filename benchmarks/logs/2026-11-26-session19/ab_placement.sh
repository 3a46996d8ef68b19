export PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc PYTHONUNBUFFERED=1
for r in 1 2 3; do for n in 1 6; do
  timeout 150 python3 -m megadelta.kernels.timing --depths 0 --reps 5 --placement-candidates $n --out $OUT/r$r-n$n.json >/dev/null 2>$OUT/r$r-n$n.log || tail -5 $OUT/r$r-n$n.log
  python3 -c "
import json,sys; d=json.load(open('$OUT/r$r-n$n.json')); p=d['placement_seconds']
print('round $r candidates $n', round(d['default']['tg128@0']['tok_s'],1), {k:[round(32/x) for x in v] for k,v in p.items()})"
done; done
