# Call 4: v43b (the partials item without a merge: a thread's query head and
# four dims over tiles of 16 positions, the next tile loaded during this one) against main (HEAD's megadelta copied
# into probe_m), three rounds at depth 0, one at 4096 and 32768.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="probe_m|;tree|" ROUNDS=3 timeout 330 bash scripts/ab_tg128.sh
OUT= ENTRIES="probe_m|;tree|" ROUNDS=1 DEPTHS=4096,32768 REPS=3 timeout 150 bash scripts/ab_tg128.sh
