#!/usr/bin/env bash
# Where does the dead edit (probe-first-poll-delay-branch.patch, -2.5% in
# session 23) lose? Nsight Compute per-instruction warp samples of one 16-step
# launch of main and of the dead edit, then their tg128 (two rounds).
# Set up: probe_m (HEAD's megadelta), probe_pd2 (+ the patch); carry both.
set -uo pipefail
export PYTHONUNBUFFERED=1
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
for t in probe_m probe_pd2; do
    (cd $t && PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc-$t timeout 200 "$ncu" --clock-control none \
        -k regex:megadelta_decode --launch-skip 1 --launch-count 1 \
        --section WarpStateStats --section SchedulerStats --section SourceCounters --import-source no \
        -f -o "$OUT/ncu-$t" python3 -m megadelta.kernels.profile > "$OUT/ncu-$t.log" 2>&1) || tail -5 "$OUT/ncu-$t.log"
    "$ncu" --import "$OUT/ncu-$t.ncu-rep" --page details --print-details all > "$OUT/ncu-$t-details.txt" 2>&1
    "$ncu" --import "$OUT/ncu-$t.ncu-rep" --page source --print-source sass --csv 2>/dev/null | gzip > "$OUT/ncu-$t-sass.csv.gz"
    grep -E "Elapsed Cycles|Duration|Warp Cycles Per Issued|Issued Ipc|No Eligible" "$OUT/ncu-$t-details.txt" | head -8
done
ENTRIES="probe_m|;probe_pd2|" ROUNDS=2 DEPTHS=0 OUT= timeout 300 bash scripts/ab_tg128.sh
