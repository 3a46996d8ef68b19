#!/usr/bin/env bash
# Ready for the next session (not run; ~7 minutes): v27 again, on today's
# kernel, under the three ptxas schedule families. next-gated-norm-half-words.patch
# adds GATED_NORM_HALF_WORDS: each recurrence item also waits for its columns
# of z and publishes w o silu(z) and its sum of o^2, so every block's gated norm
# polls 2,048 + 64 words instead of 4,096 (o and z) and scales by each head's
# 1 / rms(o). Checked on the CPU: without the macro the patched tree builds
# main's SASS (sass_loops, NVRTC 13.0.88, all 11 loops and the whole kernel);
# with it the CPU emulation matches the reference (and fails with the sums of
# o^2 doubled), and no config or architecture spills.
# Why: the per-block timeline of the twenty-sixth session has the gated norm's
# o and z 1.5-1.7 us after the last o is published (2.1-2.2 with no layer
# pages), the slowest hand-off of a DeltaNet layer, while the recurrence's own
# inputs (a head's 386 words) arrive 0.1-0.4 us after theirs. v27 lost 10% in
# one round on 2026-11-26, in a process that read 2,950 GB/s against 3,072-3,081
# for the rounds around it. Prediction: if the hand-off's time follows the words
# every block polls, ~0.7 us a DeltaNet layer, +1-2% tg128.
# ab_tg128.sh appends every timing's JSON to one $OUT/ab_tg128.jsonl (since
# this session; it wrote a file a timing before, which crowded out summaries).
set -uo pipefail
L=benchmarks/logs/2026-11-27-session30
git apply $L/next-gated-norm-half-words.patch
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DGATED_NORM_HALF_WORDS=1" FAMILIES="4 0 8" ROUNDS=2 DEPTHS=0 OUT=$OUT \
    bash scripts/ab_tg128.sh 2>&1 | tee $OUT/gated-norm-half-words.txt
