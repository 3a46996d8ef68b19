#!/usr/bin/env bash
# Call 1 (twenty-sixth session): (a) the probe prepared by the twenty-fifth
# session: split call 4's 525 us a step with free weights and free products into
# the producer's walk over the layer pages and the hand-offs themselves
# (probe-no-layer-pages.patch: call 4's two probes and PROBE_NO_LAYER_PAGES, no
# layer matrix has pages at all). Prediction: if the page walk is a large share,
# NO_LAYER_PAGES runs well above "both free" (1,901-1,909 tok/s); if not, about
# the same. (b) the read ceiling's trials, every one recorded, 30 in each of 6
# processes (ceiling_trials.py): does best-of-5 settle the ceiling?
set -uo pipefail
L=benchmarks/logs/2026-11-27-session30
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
for i in 1 2 3 4 5 6; do python3 $L/ceiling_trials.py 30; done 2>&1 | tee $OUT/ceiling-trials.jsonl
git apply $L/probe-no-layer-pages.patch
ENTRIES="tree|;tree|-DPROBE_NO_LAYER_COPIES -DPROBE_SKIP_LAYER_PRODUCTS;tree|-DPROBE_NO_LAYER_PAGES" ROUNDS=2 DEPTHS=0 \
    OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/no-layer-pages.txt
