#!/usr/bin/env bash
# The llama.cpp peer on the GPU machine: unpack the llama-bench that
# scripts/build_llama_bench.sh put in .cache/llama and convert a checkpoint
# ($CHECKPOINT, default the embedded one) to a bf16 GGUF (each only once, so a
# call may start this in the background early and scripts/gpu_suite.sh finds
# the work done).
# Prints the benchmark's arguments, `--llama-bench BIN --gguf FILE`; the
# converter's log goes to $LOG (default /dev/null).
#
#   LOG=$OUT/gguf.log scripts/llama_peer.sh
#   CHECKPOINT=/path/to/model LOG=$OUT/gguf.log scripts/llama_peer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=/tmp/megadelta-llama
mkdir -p "$DIR"
# A lock, so that a second caller waits for the work in flight instead of
# starting its own.
exec 9>"$DIR/prepare.lock"
flock 9
[ -x "$DIR/llama-bench" ] || {
    python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.cache/llama/llama-bench.xz'), open('$DIR/llama-bench.part', 'wb'))"
    chmod +x "$DIR/llama-bench.part" && mv "$DIR/llama-bench.part" "$DIR/llama-bench"
}
checkpoint=${CHECKPOINT:-$(python3 -c "from megadelta.checkpoint import default_checkpoint; print(default_checkpoint())")}
gguf=$DIR/$(basename "$checkpoint")-bf16.gguf
[ -f "$gguf" ] || {
    PYTHONPATH=.cache/llama/gguf-py timeout 300 python3 .cache/llama/convert_hf_to_gguf.py \
        "$checkpoint" --no-mtp --outtype bf16 --outfile "$gguf.part" > "${LOG:-/dev/null}" 2>&1
    mv "$gguf.part" "$gguf"
}
echo "--llama-bench $DIR/llama-bench --gguf $gguf"
