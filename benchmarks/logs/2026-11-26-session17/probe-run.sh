#!/usr/bin/env bash
# ENTRIES="dir|options;dir|options" ROUNDS=n bash probe_f/run.sh   (dir "tree" = the repo root)
# Each entry: tg128 at depth 0 of that build, in a process of its own.
cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONUNBUFFERED=1
IFS=';' read -ra LIST <<< "$ENTRIES"
for r in $(seq 1 ${ROUNDS:-2}); do
  for e in "${LIST[@]}"; do
    dir=${e%%|*}; opts=${e#*|}
    [ "$dir" = tree ] && dir=$ROOT || dir=$ROOT/$dir
    out=/tmp/probe-$RANDOM.json
    (cd "$dir" && MEGADELTA_CACHE=/tmp/mc-$(basename $dir) PYTHONPATH=$dir timeout 150 python3 -m megadelta.kernels.timing \
        --options="$opts" --depths ${DEPTHS:-0} --reps ${REPS:-5} --out $out >/dev/null 2>/tmp/err.txt) || { echo "FAIL $e"; tail -5 /tmp/err.txt; }
    python3 -c "import json,sys; d=json.load(open('$out')); print('round $r | $e | ' + ' | '.join('%s %.1f' % (k, v['tok_s']) for k, v in d['default'].items() if k.startswith('tg')) + ' | floor %.1f' % d['floor_tok_s'])" 2>/dev/null
    [ -n "${OUT:-}" ] && cp $out "$OUT/r$r-$(echo "$e" | tr -c 'A-Za-z0-9_=-' _).json" 2>/dev/null
  done
done
