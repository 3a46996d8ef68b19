#!/usr/bin/env bash
# Call 4 (twenty-sixth session): v44 (the DeltaNet in_proj as [qkv | b | a]
# then z, both dealt over all blocks) against main (747ce05's package, copied to
# ab-main/), two rounds under ptxas families 4 and 8; then the 0.8B megakernel
# GPU tests of the candidate. Prediction (stage clock of call 3): the recurrence
# waits ~2 us after the slowest in_proj writer; with q, k, v, b, a out after
# ~3/4 of each block's in_proj rows that writer is ~0.9 us earlier a DeltaNet
# layer: +2-2.5% tg128 if the stream does not take the time back.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="ab-main|;tree|" FAMILIES="4 8" ROUNDS=2 DEPTHS=0 bash scripts/ab_tg128.sh 2>&1 | tee $OUT/v44-ab.txt
timeout 260 python3 -m pytest -m gpu tests/gpu/test_megakernel.py -k "0.8b or pre_hopper" -q -s -rs \
    --timeout 200 -p no:cacheprovider 2>&1 | tail -30 | tee $OUT/v44-gpu-tests.log
