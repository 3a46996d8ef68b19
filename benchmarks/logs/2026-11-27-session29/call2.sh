#!/usr/bin/env bash
# Call 2 (twenty-fifth session): main's build shifted by LAYOUT_PAD instructions
# (16 bytes each; the same SASS otherwise, checked with sass_loops under NVRTC 13.0).
# PAD 6 and 14 put the code at the same offset modulo 128 bytes (96), PAD 8 at 0
# like PAD 0. Prediction if the twentieth session's layout spread is the code's
# alignment to 128-byte lines: 6 ~ 14 > 0 ~ 8 (by ~0.5-0.8%); if noise, no pattern.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DLAYOUT_PAD=6;tree|-DLAYOUT_PAD=8;tree|-DLAYOUT_PAD=14" ROUNDS=3 DEPTHS=0 \
    OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/call2-layout-pad.txt
