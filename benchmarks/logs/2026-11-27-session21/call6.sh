# Call 6 (the session's last device minutes): the stream's pace at the grid of
# 128 (3% fewer bytes in flight than 132 blocks kept): more copies in flight
# while the compute warps' lead is short (PAGES_IN_FLIGHT_SHORT 5, default 4),
# or a longer lead before the short-lead limit applies (SHORT_LEAD_PAGES 8,
# default 6), against the defaults, two rounds.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="tree|;tree|-DPAGES_IN_FLIGHT_SHORT=5;tree|-DSHORT_LEAD_PAGES=8" ROUNDS=2 timeout 400 bash scripts/ab_tg128.sh
