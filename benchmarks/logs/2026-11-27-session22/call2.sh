# Call 2: the recurrence and partials items on one SM of each TPC pair
# (ITEM_SPREAD 2) or on every eighth block (8), against the defaults, three
# rounds each in a process of their own; then the stage clock at 128 blocks.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="tree|;tree|-DITEM_SPREAD=2;tree|-DITEM_SPREAD=8" ROUNDS=3 timeout 420 bash scripts/ab_tg128.sh
MEGADELTA_CACHE=/tmp/mc timeout 150 python3 -m megadelta.kernels.timing --stages --depths 0 --reps 3 \
    --out /tmp/stages.json >/dev/null 2>/tmp/stages.log || tail -5 /tmp/stages.log
gzip -c /tmp/stages.json > "$OUT/h100-stage-clock-grid128.json.gz"
