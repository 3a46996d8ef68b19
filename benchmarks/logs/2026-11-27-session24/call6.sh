#!/usr/bin/env bash
# Was v43b (the partials without a merge; the clock build credits it +2.2%, its
# default build lost 0.7-1.4%) a good design in an unlucky schedule? Main's
# PTX gave good schedules under ptxas's default and level-8 families (call 3);
# here v43b under all three families (default, 0, 8), beside main's two.
set -uo pipefail
export PYTHONUNBUFFERED=1
L=-Xptxas=--register-usage-level
ENTRIES="probe_m|;probe_m|$L=8;probe_v43b|;probe_v43b|$L=0;probe_v43b|$L=8" \
    ROUNDS=2 DEPTHS=0 OUT= timeout 590 bash scripts/ab_tg128.sh
