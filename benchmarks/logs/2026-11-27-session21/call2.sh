PYTHONPATH=$PWD timeout 300 python3 benchmarks/logs/2026-11-27-session21/probe_l2_partition.py $OUT/l2.json
