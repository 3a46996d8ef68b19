# Ready for the next session (not run): call 6's candidate, PAGES_IN_FLIGHT_SHORT
# 5 at the grid of 128, against the defaults and 6, four rounds (~9 minutes
# with the builds). If 5 holds its +0.65%, make it staging.cuh's default, then
# run `STEPS="1 5" GPU_TESTS=tests/gpu/test_megakernel.py scripts/gpu_suite.sh`
# and `STEPS="1 2 4" scripts/gpu_suite.sh` (with .cache/llama carried).
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="tree|;tree|-DPAGES_IN_FLIGHT_SHORT=5;tree|-DPAGES_IN_FLIGHT_SHORT=6" ROUNDS=4 timeout 580 bash scripts/ab_tg128.sh
