#!/usr/bin/env bash
# A/B of megakernel builds on a GPU: tg128 of each build in a process of its
# own, the builds taken in turn, round after round (a build timed beside
# another in one process ran 4% slow, docs/perf-notes.md v29a; a machine start
# moves every build by ~1%, so compare only within one call).
#
#   ENTRIES="tree|;tree|-DPAGES_IN_FLIGHT=3;../other|" ROUNDS=2 scripts/ab_tg128.sh
#
# An entry is DIR|OPTIONS: DIR holds a `megadelta` package ("tree" = this
# checkout; another tree, e.g. main's, copied beside it), OPTIONS the NVRTC
# options of its build (megadelta.kernels.timing --options). DEPTHS (default 0)
# and REPS (default 5) go to megadelta.kernels.timing; when $OUT is set, each
# timing's JSON is appended as a line, with its round and entry, to
# $OUT/ab_tg128.jsonl (one file: the device returns eight, and a file a timing
# crowded out the call's own summaries). Prints one line per entry and round.
#
# FAMILIES="4 0 8" times each entry under each of these ptxas
# --register-usage-level values (4 is ptxas's default; 0-3, 4-5 and 6-10 are
# three distinct schedules). A build's last 2-3% depend on how ptxas
# schedules the whole kernel, which any edit draws anew, so judge a change by
# several schedules on each side, not by one (docs/perf-notes.md, twentieth).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONUNBUFFERED=1
IFS=';' read -ra LIST <<< "${ENTRIES:?set ENTRIES}"
if [ -n "${FAMILIES:-}" ]; then
    drawn=()
    for entry in "${LIST[@]}"; do
        options=${entry#*|}
        for level in $FAMILIES; do drawn+=("$entry${options:+ }-Xptxas=--register-usage-level=$level"); done
    done
    LIST=("${drawn[@]}")
fi
for round in $(seq 1 "${ROUNDS:-2}"); do
    for entry in "${LIST[@]}"; do
        dir=${entry%%|*} options=${entry#*|}
        [ "$dir" = tree ] && dir=$ROOT || dir=$(realpath "$dir")
        out=$(mktemp --suffix=.json)
        if (cd "$dir" && MEGADELTA_CACHE=/tmp/megadelta-ab-$(echo "$dir" | md5sum | cut -c1-8) PYTHONPATH=$dir \
                timeout 150 python3 -m megadelta.kernels.timing --options="$options" --depths "${DEPTHS:-0}" \
                --reps "${REPS:-5}" --out "$out" >/dev/null 2>"$out.log"); then
            python3 - "$out" "$round" "$entry" "${OUT:+$OUT/ab_tg128.jsonl}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
tg = " | ".join(f"{k} {v['tok_s']:.1f}" for k, v in d["default"].items() if k.startswith("tg"))
print(f"round {sys.argv[2]} | {sys.argv[3]} | {tg} | floor {d['floor_tok_s']:.1f}")
if sys.argv[4]:
    with open(sys.argv[4], "a") as f:
        f.write(json.dumps({"round": int(sys.argv[2]), "entry": sys.argv[3], **d}) + "\n")
PY
        else
            echo "round $round | $entry | FAILED"; tail -5 "$out.log"
        fi
        rm -f "$out" "$out.log"
    done
done
