#!/usr/bin/env bash
# Call 2: DN_ITEM_COLUMNS=16 (candidate-dn-item-columns.patch): 128 DeltaNet
# recurrence items of 16 value columns instead of 64 of 32, so at grid 128 every
# block runs one item of half the work, and the o hand-off to the gated norm is
# written by every block at about the same time (the all-writers shape that took
# 1.0 us to o_proj in the twenty-third session, against 2.3-2.8 us from 64 items).
# Without the option the tree builds main's SASS (0 of 12,448 instructions
# differ); with it loops 4-10 are rescheduled, so three ptxas families a side.
# Then the 0.8B megakernel GPU tests with the option as the default.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DDN_ITEM_COLUMNS=16" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT=$OUT \
    bash scripts/ab_tg128.sh 2>&1 | tee $OUT/item-columns.txt
mkdir -p probe_dn16 && cp -r megadelta tests pyproject.toml probe_dn16/
sed -i 's/#define DN_ITEM_COLUMNS 32/#define DN_ITEM_COLUMNS 16/' probe_dn16/megadelta/kernels/smem.cuh
cd probe_dn16 && PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/probe-dn16-cache timeout 170 \
    python3 -m pytest -m gpu tests/gpu/test_megakernel.py -k "0.8b or pre_hopper" -q -rs -p no:cacheprovider \
    2>&1 | tail -15 | tee $OUT/item-columns-gpu-tests.txt
