#!/usr/bin/env bash
# The one GPU script: in one call on a CUDA machine, compile the megakernel, run
# the benchmarks and every GPU test, and write logs and results under $OUT.
#
#   scripts/device_wheels.sh                    # once, where PyPI is reachable
#   OUT=/tmp/out MEGADELTA_COMMIT=<hash> scripts/gpu_suite.sh
#     (the hash as the checkout that holds the repository reads it: a tree copied to a
#     GPU machine may carry a stale .git, and git there would name an older commit)
#   SKIP_BENCH=1 scripts/gpu_suite.sh           # no benchmarks (stages 2 and 4)
#   STEPS="1 5 6" scripts/gpu_suite.sh          # only these stages (a call has 10 minutes)
#   BENCH_ARGS="-p 520 -n 128 -r 10" scripts/gpu_suite.sh
#   TIMING_ARGS="--variant=-DPOSITIONS_IN_FLIGHT=1" scripts/gpu_suite.sh   # also time a build variant
#   STEPS=5 GPU_TESTS=tests/gpu/test_megakernel.py scripts/gpu_suite.sh   # one GPU test file (a call has 10 minutes)
#
# Stages, most wanted first (a lent machine may stop the call at its time limit;
# what is under $OUT by then is kept):
#   1. megakernel smoke check (compile, 16 steps vs the reference, one greedy launch; watchdog)
#   2. benchmark: megakernel (with fast prefill) and transformers eager, same checkpoint, same run
#   3. megakernel timing against the floor, with the stage clock's breakdown and block 0's unit clock
#   4. long-context benchmark (pp32768, tg128 at depth 4096 and 32768), megakernel and transformers eager
#   (2 and 4 also run llama.cpp when .cache/llama is carried: scripts/build_llama_bench.sh)
#   5. every GPU test
#   6. fast prefill profile: the kernel-time table of one pp520 (where the fixed cost goes)
#   7. delta-rule kernel sweep: candidate tunings of the prefill's gated delta rule
#   8. Nsight Compute profile of one 16-step decode launch: warp stall reasons,
#      per-instruction samples (PROFILE_OPTIONS: arguments of megadelta.kernels.profile,
#      e.g. --option=-DPAGES_IN_FLIGHT=2)
#   9. the same benchmark on a random-weight checkpoint of the Qwen3.5-2B config
#      (BENCH_2B_ARGS; with llama.cpp when .cache/llama is carried)
# A failing stage is logged and the rest still run (a failed smoke check skips
# the megakernel's own stages); the exit status is 1 if any stage failed.
# $OUT gets suite.log, pytest.log and one JSON per benchmark run (their markdown
# tables and charts are rebuilt from the JSON with `megadelta bench --readme-table`
# and megadelta.bench.report).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT/bench"
if compgen -G ".cache/bench-whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
    export PYTHONPATH=/tmp/megadelta-site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
export MEGADELTA_CACHE=${MEGADELTA_CACHE:-/tmp/megadelta-cache}
status=0
STEPS=${STEPS:-1 2 3 4 5 6 7 9}
want() { [[ " $STEPS " == *" $1 "* ]]; }
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/suite.log"; }
run() { "$@" 2>&1 | tee -a "$OUT/suite.log" || { status=1; log "FAILED: $*"; }; }
bench() {
    run timeout "$1" python3 -m megadelta.bench --output "$OUT/bench" "${@:2}"
    rm -f "$OUT"/bench/*/*.md "$OUT"/bench/*/*.png   # rebuilt from the JSON; keeps $OUT small
}

log "device"
run nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm,clocks.mem --format=csv

log "1. megakernel smoke check (always: it gates the megakernel's stages)"
megakernel_ok=1
run timeout 120 python3 -m megadelta.kernels.smoke
grep -q "^\[.*\] PASS$" "$OUT/suite.log" || { megakernel_ok=0; log "smoke check failed: megakernel stages skipped"; }
base_systems=hf-transformers-eager
[ "$megakernel_ok" = 1 ] && base_systems=megadelta-megakernel,$base_systems
# The systems of a benchmark of checkpoint $1 ("" = the embedded default) into
# `systems`, and the llama.cpp peer's arguments into `llama_args` when
# .cache/llama is carried: the checkpoint as a bf16 GGUF (converted once).
peers_for() {
    systems=$base_systems
    llama_args=()
    [ -f .cache/llama/llama-bench.xz ] || return 0
    log "llama.cpp peer (scripts/build_llama_bench.sh): ${1:-the default checkpoint} as a bf16 GGUF"
    local peer
    if peer=$(CHECKPOINT=$1 LOG="$OUT/gguf${1:+-$(basename "$1")}.log" bash scripts/llama_peer.sh); then
        systems=$systems,llama.cpp
        read -ra llama_args <<< "$peer"
    else
        status=1; log "FAILED: llama.cpp peer (gguf log under \$OUT)"
    fi
}
if [ -f .cache/llama/llama-bench.xz ]; then
    # cuBLAS for llama-bench: the libraries that torch's nvidia packages bring.
    cublas=$(python3 -c "import nvidia.cu13, os; print(os.path.join(list(nvidia.cu13.__path__)[0], 'lib'))" 2>/dev/null)
    export LD_LIBRARY_PATH=${cublas}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
{ want 2 || want 4; } && peers_for ""

if [ -z "${SKIP_BENCH:-}" ] && want 2; then
    log "2. benchmark: $systems"
    bench 300 --systems "$systems" "${llama_args[@]}" ${BENCH_ARGS:--p 128,520,2048,8192 -n 128 -r 10}
fi

if [ "$megakernel_ok" = 1 ]; then
    if want 3; then
        log "3. megakernel timing vs the bandwidth floor"
        run timeout 200 python3 -m megadelta.kernels.timing --stages --reps 5 ${TIMING_ARGS:-} \
            --out "$OUT/timing.json"
        run timeout 120 python3 -m megadelta.kernels.timing --units --depths 0 --reps 1 --out "$OUT/units.json"
    fi
    if [ -z "${SKIP_BENCH:-}" ] && want 4; then
        log "4. long-context benchmark: $systems"
        bench 420 --systems "$systems" "${llama_args[@]}" ${LONG_BENCH_ARGS:--p 32768 -n 128 --depth 4096,32768 -r 5}
    fi
fi

if want 5; then
    log "5. GPU tests"
    deselect=()
    [ "$megakernel_ok" = 1 ] || deselect=(--ignore=tests/gpu/test_megakernel.py -k "not megakernel")
    timeout 600 python3 -m pytest -m gpu ${GPU_TESTS:-tests/gpu/test_prefill.py tests/gpu/test_megakernel.py} -q -s -rs \
        --timeout 300 -p no:cacheprovider "${deselect[@]}" 2>&1 | tee "$OUT/pytest.log" || status=1
fi

if want 6; then
    log "6. fast prefill profile"
    run timeout 120 python3 -m megadelta.prefill.bench --lengths 128 520 --reps 10 --profile 520
fi

if want 7; then
    log "7. delta-rule kernel sweep"
    run timeout 240 python3 -m megadelta.prefill.tune_deltanet --out "$OUT/deltanet-tuning.json"
fi
if [ "$megakernel_ok" = 1 ] && want 8; then
    log "8. decode megakernel under Nsight Compute"
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
    run timeout 300 "$ncu" --clock-control none -k regex:megadelta_decode --launch-skip 1 --launch-count 1 \
        --section WarpStateStats --section SchedulerStats --section InstructionStats \
        --section MemoryWorkloadAnalysis --section SourceCounters --import-source no \
        -f -o "$OUT/decode" python3 -m megadelta.kernels.profile ${PROFILE_OPTIONS:-}
    "$ncu" --import "$OUT/decode.ncu-rep" --page details --print-details all > "$OUT/decode-details.txt" \
        2>> "$OUT/suite.log" || { status=1; log "ncu report failed"; }
    "$ncu" --import "$OUT/decode.ncu-rep" --page source --print-source sass --csv > "$OUT/decode-sass.csv" \
        2>> "$OUT/suite.log" || log "no per-instruction page"
fi

if [ -z "${SKIP_BENCH:-}" ] && want 9; then
    log "9. Qwen3.5-2B benchmark (a random-weight checkpoint of the 2B config)"
    model_2b=$(python3 -c "from megadelta.checkpoint import cached_random_checkpoint as c
from megadelta.config import QWEN35_2B; print(c(QWEN35_2B, 0, confident=True))") \
        || { status=1; log "FAILED: the 2B checkpoint"; }
    if [ -n "${model_2b:-}" ]; then
        peers_for "$model_2b"
        bench 360 --model "$model_2b" --systems "$systems" "${llama_args[@]}" ${BENCH_2B_ARGS:--p 520 -n 128 -r 10}
    fi
fi

log "done, status $status"
exit $status
