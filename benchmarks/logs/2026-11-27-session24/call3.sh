#!/usr/bin/env bash
# Schedule census: ptxas's distinct schedules of main's source (SASS hashes,
# NVRTC 13.0: default = levels 4-5 = -O2; levels 0-3; levels 6-10;
# -maxrregcount any), and the dead edit (probe_pd2, -2.2..-2.9% in three calls)
# under the default and level 8: is a build's speed its schedule's luck?
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -c "from megadelta.kernels.build import _Nvrtc; print('nvrtc', _Nvrtc().version())"
ENTRIES="probe_m|;probe_m|-Xptxas=--register-usage-level=0;probe_m|-Xptxas=--register-usage-level=8;probe_m|-maxrregcount=232;probe_pd2|;probe_pd2|-Xptxas=--register-usage-level=8" \
    ROUNDS=2 DEPTHS=0 OUT= timeout 590 bash scripts/ab_tg128.sh
