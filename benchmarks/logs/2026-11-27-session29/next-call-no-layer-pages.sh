#!/usr/bin/env bash
# Ready for the next session (not run): split call 4's 525 us a step with free
# weights and free products into the producer's walk over the layer pages and
# the hand-offs themselves. next-probe-no-layer-pages.patch holds call 4's two
# probes and PROBE_NO_LAYER_PAGES: no layer matrix has pages at all (the
# producer gives none, the products wait for none and multiply nothing).
# Without a macro the patched tree builds main's SASS (sass_loops, NVRTC 13.0.88);
# every macro builds without spills; PROBE_NO_LAYER_PAGES ran to the end in the
# CPU emulation (grid 2, a step and a 3-step greedy launch; garbage output).
# Prediction: if the page walk is a large share of the 525 us, NO_LAYER_PAGES runs
# well above call 4's "both free" (1,901-1,909 tok/s); if not, about the same.
set -uo pipefail
git apply benchmarks/logs/2026-11-27-session29/next-probe-no-layer-pages.patch
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DPROBE_NO_LAYER_COPIES -DPROBE_SKIP_LAYER_PRODUCTS;tree|-DPROBE_NO_LAYER_PAGES" ROUNDS=2 DEPTHS=0 \
    OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/no-layer-pages.txt
