# Call 3: v43 (the partials item without a merge: a thread's query head and
# four dims over tiles of 16 positions) against main (HEAD's megadelta copied
# into probe_m), three rounds at depth 0, one at 4096 and 32768; then the
# stage clock of v43 at depths 0 and 64.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="probe_m|;tree|" ROUNDS=3 timeout 330 bash scripts/ab_tg128.sh
OUT= ENTRIES="probe_m|;tree|" ROUNDS=1 DEPTHS=4096,32768 REPS=3 timeout 150 bash scripts/ab_tg128.sh
MEGADELTA_CACHE=/tmp/mc timeout 110 python3 -m megadelta.kernels.timing --stages --depths 0,64 --reps 3 \
    --out /tmp/stages.json >/dev/null 2>/tmp/stages.log || tail -5 /tmp/stages.log
gzip -c /tmp/stages.json > "$OUT/h100-v43-stage-clock.json.gz"
