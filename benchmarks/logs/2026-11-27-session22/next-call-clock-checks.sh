# Ready for the next session (not run): does the clock build itself run v43b
# faster, and what does main's stage clock say at depth 64 (perf-notes,
# eighteenth)? ~8 minutes. Set up here first, then carry ["probe_v"]:
#   rm -rf probe_v && mkdir probe_v && git archive HEAD megadelta | tar -x -C probe_v
#   (cd probe_v && patch -p1 < ../benchmarks/logs/2026-11-27-session22/v43b-partials-without-merge.patch)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="tree|-DSTAGE_CLOCK=1;probe_v|-DSTAGE_CLOCK=1" ROUNDS=2 timeout 240 bash scripts/ab_tg128.sh
for tree in . probe_v; do
  (cd $tree && PYTHONPATH=$PWD MEGADELTA_CACHE=/tmp/mc-$(basename $(realpath $tree)) timeout 110 \
      python3 -m megadelta.kernels.timing --stages --depths 0,64 --reps 3 --out /tmp/stages.json \
      >/dev/null 2>/tmp/stages.log) || tail -5 /tmp/stages.log
  gzip -c /tmp/stages.json > "$OUT/h100-stage-clock-$(basename $(realpath $tree)).json.gz"
done
