export PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc PYTHONUNBUFFERED=1
L=benchmarks/logs/2026-11-26-session20
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
(cd probe_m && PYTHONPATH=$PWD timeout 200 python3 ../$L/probe_placement_tail.py $OUT/tail.json) 2>&1 | grep -v Warn | tail -30
OUT= ENTRIES="probe_m|;probe_pc|;tree|" ROUNDS=2 DEPTHS=0 REPS=5 timeout 330 bash scripts/ab_tg128.sh
(cd probe_m && PYTHONPATH=$PWD timeout 90 python3 ../benchmarks/logs/2026-11-26-session19/probe_placement_grid.py $OUT/grid.json) 2>&1 | tail -6
