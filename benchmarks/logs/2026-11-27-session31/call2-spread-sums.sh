#!/usr/bin/env bash
# Call 2: v27 with its sums of o^2 spread (GATED_NORM_HALF_WORDS=2), against
# main and the packed sums of call 1 (=1). Hypothesis: the packed sums' four
# 128-byte lines are polled by every gated-norm warp of every block, ~2,048
# requests a line a polling round against ~128 for a line of o, so one L2
# slice serialises the hand-off. =2 gives each warp's sums a line of its own,
# loaded in one request (one word a lane, summed by shuffles).
set -uo pipefail
L=benchmarks/logs/2026-11-27-session31
git apply $L/gated-norm-half-words-spread.patch
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
F4=-Xptxas=--register-usage-level=4 F8=-Xptxas=--register-usage-level=8
ENTRIES="tree|$F4;tree|$F8;tree|-DGATED_NORM_HALF_WORDS=2 $F4;tree|-DGATED_NORM_HALF_WORDS=2 $F8;tree|-DGATED_NORM_HALF_WORDS=1 $F4" \
    ROUNDS=2 DEPTHS=0 OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/spread-sums.txt
