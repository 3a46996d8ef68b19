#!/usr/bin/env bash
# Call 3: DN_ITEM_COLUMNS=16 lost 1.1% in call 2 under all three families. One
# reading: with 128 items the lines of all heads' b and a take ~1,024 polls a
# round (every warp of every item), half of v27's hot sums (2,048, ~6.7%).
# ITEM_INPUTS_ONE_WARP (session 31's probe, adapted: v taken by column) makes
# only an item's last warp poll b, a and v: 128 a line. Main against both options
# together under families 4 and 8 (candidate-dn-item-columns-one-warp.patch).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DDN_ITEM_COLUMNS=16 -DITEM_INPUTS_ONE_WARP=1" FAMILIES="4 8" ROUNDS=2 DEPTHS=0 OUT=$OUT \
    bash scripts/ab_tg128.sh 2>&1 | tee $OUT/item-columns-one-warp.txt
