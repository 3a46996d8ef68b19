#!/usr/bin/env bash
# The one GPU script: compile the megakernel, run every GPU test, time decode,
# run the benchmark. Logs and JSON go to $OUT (default ./out).
#   scripts/gpu_suite.sh                  everything
#   PYTEST_ADDOPTS="-k greedy" scripts/gpu_suite.sh   a subset of the GPU tests (pytest reads it)
#   SKIP_BENCH=1 scripts/gpu_suite.sh     no benchmark
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-.}${PYTHONPATH:+:.}
export PYTHONUNBUFFERED=1
export MEGADELTA_CACHE=${MEGADELTA_CACHE:-/tmp/megadelta-cache}
status=0

echo "== device" | tee "$OUT/suite.log"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$OUT/suite.log"

echo "== compile (NVRTC, resource usage)" | tee -a "$OUT/suite.log"
python3 - <<'PY' 2>&1 | tee -a "$OUT/suite.log" || status=1
from megadelta.config import PRESETS
from megadelta.kernels.build import compile_megakernel
from megadelta.kernels.driver import arch_of
import torch
arch = arch_of(torch.device("cuda"))
for name, config in PRESETS.items():
    b = compile_megakernel(config, arch, use_cache=False, extra_options=("--ptxas-options=-v",))
    print(name, arch, [l.strip() for l in b.log.splitlines() if "stack" in l or "registers" in l])
PY

echo "== smoke: one small model, watchdog on every step" | tee -a "$OUT/suite.log"
if ! timeout 180 python3 -m megadelta.kernels.smoke 2>&1 | tee -a "$OUT/suite.log"; then
    echo "smoke check failed: skipping the GPU tests and timing" | tee -a "$OUT/suite.log"
    exit 1
fi

echo "== GPU tests" | tee -a "$OUT/suite.log"
timeout 330 python3 -m pytest -m gpu tests -q -s -rs 2>&1 | tee "$OUT/pytest.log" || status=1

echo "== decode timing vs the bandwidth floor" | tee -a "$OUT/suite.log"
timeout 150 python3 -m megadelta.kernels.timing --out "$OUT/timing.json" --reps 3 --variant=-DPREFETCH_NEXT_STAGE=0 2>&1 | tee -a "$OUT/suite.log" || status=1

if [ -z "${SKIP_BENCH:-}" ] && [ -f megadelta/bench/__main__.py ]; then
    echo "== benchmark" | tee -a "$OUT/suite.log"
    timeout 180 python3 -m megadelta.bench --output "$OUT/bench" ${BENCH_ARGS:--r 3} \
        2>&1 | tee "$OUT/bench.log" || status=1
fi
exit $status
