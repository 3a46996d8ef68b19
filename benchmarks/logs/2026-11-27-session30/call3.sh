#!/usr/bin/env bash
# Call 3 (twenty-sixth session), at 2c4cda1 (the ceilings measured before and
# after the timed runs, the better counting): (1) the benchmarks, stages 1, 2
# and 4 of scripts/gpu_suite.sh; (2) the benchmark's GPU test; (3) the stage
# clock of main and of PROBE_NO_LAYER_PAGES (probe-no-layer-pages.patch): which
# hand-offs the chain alone spends its ~13 us a layer on.
set -uo pipefail
L=benchmarks/logs/2026-11-27-session30
STEPS="1 2 4" MEGADELTA_COMMIT=${MEGADELTA_COMMIT:?} OUT=$OUT bash scripts/gpu_suite.sh
export PYTHONPATH=/tmp/megadelta-site:$PWD
timeout 150 python3 -m pytest -m gpu tests/test_bench.py -q -rs -p no:cacheprovider 2>&1 | tail -5 | tee $OUT/bench-gpu-test.log
git apply $L/probe-no-layer-pages.patch
for options in "" "-DPROBE_NO_LAYER_PAGES"; do
    name=stages${options:+-no-layer-pages}
    timeout 120 python3 -m megadelta.kernels.timing --stages --depths 0 --reps 3 --placement-candidates 1 \
        --options="$options" --out $OUT/$name.json > /dev/null 2> $OUT/$name.log || tail -5 $OUT/$name.log
done
