#!/usr/bin/env bash
# Call 2 (H100): (1) the stage clock of whole heads and of the split (main's
# SASS) at depths 48 and 112 (one and two rounds of positions a warp), to see
# whether the whole-heads attention layer is slower in the clock build too;
# (2) the products' math as an upper bound today: PROBE_NO_MATH (probe_math/,
# main plus the probe: each 16-byte weight chunk adds one masked word instead
# of its 8 products; wrong output) against the same tree without it, 2 rounds.
set -uo pipefail
export PYTHONUNBUFFERED=1
for opt in "-DWHOLE_HEAD_MAX_POSITIONS=0" ""; do
    name=$([ -n "$opt" ] && echo split || echo whole-heads)
    MEGADELTA_CACHE=/tmp/mc-$name PYTHONPATH=$PWD timeout 150 python3 -m megadelta.kernels.timing --options="$opt" \
        --depths 48,112 --reps 3 --stages --out "$OUT/stages-$name.json" > "$OUT/stages-$name.log" 2>&1
    python3 - "$OUT/stages-$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(sys.argv[2], {k: round(v["tok_s"], 1) for k, v in d["default"].items() if k.startswith("tg")}, "floor", round(d["floor_tok_s"], 1))
PY
done
ENTRIES="probe_math|;probe_math|-DPROBE_NO_MATH=1" ROUNDS=2 DEPTHS=0 OUT= \
    timeout 200 bash scripts/ab_tg128.sh 2>&1 | tee "$OUT/no-math.txt"
