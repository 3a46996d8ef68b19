#!/usr/bin/env bash
# Call 4: the benchmarks (stages 1, 2 and 4 of scripts/gpu_suite.sh) at main,
# nothing beside them, so both JSON files come back (the device returns eight
# files; session 30's call 3 wrote nine and lost its long-context JSON).
set -uo pipefail
STEPS="1 2 4" MEGADELTA_COMMIT=${MEGADELTA_COMMIT:?} OUT=$OUT bash scripts/gpu_suite.sh
