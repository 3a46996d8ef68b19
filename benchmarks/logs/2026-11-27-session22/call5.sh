# Call 5: is v43b's loss its shared-memory layout? (v31 lost the same way
# after removing att_acc, sixth session of 2026-11-26.) probe_p is v43b with
# a 3,072-byte pad before the DeltaNet tile, so that the tile and the ring sit
# where main has them (Smem 49,280 bytes in both). Three rounds at depth 0.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="probe_m|;tree|;probe_p|" ROUNDS=3 timeout 560 bash scripts/ab_tg128.sh
