#!/usr/bin/env bash
# Ready for the next session (not run): where does a semantically dead edit
# lose 2.5% (perf-notes, nineteenth)? Nsight Compute warp states of one 16-step
# launch for main, for the probe tree with its sleep behind a never-taken branch
# (-2.5% in calls 4 and 5) and for the argmax-slots candidate (even with main in
# call 1), then tg128 of the three once more. ~8 minutes. Set up here first, then
# carry ["probe_m", "probe_pd2", "probe_as"]:
#   for t in m pd2 as; do rm -rf probe_$t && mkdir probe_$t && git archive HEAD megadelta | tar -x -C probe_$t; done
#   (cd probe_pd2 && patch -p1 < ../benchmarks/logs/2026-11-27-session23/probe-first-poll-delay-branch.patch)
#   (cd probe_as && patch -p1 < ../benchmarks/logs/2026-11-27-session23/candidate-argmax-slots-without-grid-barrier.patch)
# Compare "Stall No Instruction" (instruction fetch), "Stall Branch Resolving",
# "Stall Long Scoreboard" and "Stall Barrier" per issued instruction across the
# three; if the fetch stalls move with the loss, the kernel's 191 KB of SASS
# and its layout are the lever (code size, cold code out of line).
set -uo pipefail
export PYTHONUNBUFFERED=1
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
for t in probe_m probe_pd2 probe_as; do
    (cd $t && PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc-$t timeout 150 "$ncu" --clock-control none \
        -k regex:megadelta_decode --launch-skip 1 --launch-count 1 \
        --section WarpStateStats --section SchedulerStats --section InstructionStats \
        -f -o "$OUT/ncu-$t" python3 -m megadelta.kernels.profile > "$OUT/ncu-$t.log" 2>&1)
    "$ncu" --import "$OUT/ncu-$t.ncu-rep" --page details --print-details all > "$OUT/ncu-$t-details.txt" 2>&1
    grep -E "Stall|Warp Cycles|Issued" "$OUT/ncu-$t-details.txt" | head -40
done
ENTRIES="probe_m|;probe_pd2|;probe_as|" ROUNDS=2 DEPTHS=0 OUT= timeout 280 bash scripts/ab_tg128.sh
