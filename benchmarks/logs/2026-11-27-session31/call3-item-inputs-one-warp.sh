#!/usr/bin/env bash
# Call 3: ITEM_INPUTS_ONE_WARP, from call 2's reading (a 128-byte line that
# every warp of every block polls is a hot spot: v27's packed sums cost ~6.7%,
# spreading them got most of it back). In main the lines of all heads' b and a
# are the hottest polled: every warp of each of the 64 recurrence items polls
# both, 512 requests a line a round. With the option only the last warp of an
# item polls b, a and v and hands them over in shared memory (64 a line).
# Then the 0.8B megakernel GPU tests with the option as the default.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
F4=-Xptxas=--register-usage-level=4 F8=-Xptxas=--register-usage-level=8
ENTRIES="tree|$F4;tree|$F8;tree|-DITEM_INPUTS_ONE_WARP=1 $F4;tree|-DITEM_INPUTS_ONE_WARP=1 $F8" \
    ROUNDS=2 DEPTHS=0 OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/one-warp.txt
mkdir -p probe_onew && cp -r megadelta tests pyproject.toml probe_onew/
sed -i 's/#define ITEM_INPUTS_ONE_WARP 0/#define ITEM_INPUTS_ONE_WARP 1/' probe_onew/megadelta/kernels/deltanet.cuh
cd probe_onew && PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/probe-onew-cache timeout 300 \
    python3 -m pytest -m gpu tests/gpu/test_megakernel.py -k "0.8b or pre_hopper" -q -rs -p no:cacheprovider \
    2>&1 | tail -15 | tee $OUT/one-warp-gpu-tests.txt
