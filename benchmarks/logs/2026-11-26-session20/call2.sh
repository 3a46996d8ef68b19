export MEGADELTA_CACHE=/tmp/mc PYTHONUNBUFFERED=1
L=$PWD/benchmarks/logs/2026-11-26-session20
cd probe_m && export PYTHONPATH=$PWD
timeout 150 python3 $L/probe_placement_bits.py $OUT/bits.json 2>&1 | grep -v Warn | tail -14
for r in 1 2; do for n in 1 6 16; do
  timeout 100 python3 -m megadelta.kernels.timing --depths 0 --reps 5 --placement-candidates $n --out /tmp/r$r-n$n.json >/dev/null 2>/tmp/r$r-n$n.log || tail -3 /tmp/r$r-n$n.log
  python3 -c "
import json; d=json.load(open('/tmp/r$r-n$n.json')); p=d['placement_seconds']
print('round $r candidates $n', round(d['default']['tg128@0']['tok_s'],1), round(d['floor_tok_s'],1), {k:[round(32/x) for x in v] for k,v in p.items()})"
done; done
