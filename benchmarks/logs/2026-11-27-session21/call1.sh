# Call 1: the llama.cpp peer prepared in the background (CPU); probe 7 (the
# DeltaNet and conv states' offsets, main's backend); A/B of main against the
# tree with candidate-deltanet-state-placement.patch applied (6 timed
# placements each, three rounds); then the benchmark with llama.cpp beside
# the megakernel, short.
set -u
export PYTHONUNBUFFERED=1
L=benchmarks/logs/2026-11-27-session21
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
(PYTHONPATH=/tmp/megadelta-site:$PWD LOG=$OUT/gguf.log bash scripts/llama_peer.sh > $OUT/llama-peer.txt 2>&1) &
(cd probe_m && PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc timeout 150 python3 ../benchmarks/logs/2026-11-26-session20/probe_state_bits.py $OUT/state.json) 2>&1 | grep -v Warn | tail -8
ENTRIES="probe_m|;tree|" ROUNDS=3 timeout 360 bash scripts/ab_tg128.sh
wait
cat $OUT/llama-peer.txt
STEPS=2 BENCH_ARGS="-p 128 -n 128 -r 5" MEGADELTA_COMMIT=call1 timeout 200 bash scripts/gpu_suite.sh 2>&1 | grep -v Warn | tail -25
