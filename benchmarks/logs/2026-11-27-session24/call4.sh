#!/usr/bin/env bash
# What in the dead edit costs 2.5%, and does NVRTC 13.5 build main faster?
#   probe_pdp: the dead edit's condition from Params (c[0x0]) instead of a __constant__ array (c[0x3])
#   probe_pdd / probe_pda: only its DeltaNet (gated norm) / only its attention (combine) half
#   probe_m135 / probe_pd135: main / the dead edit built here by NVRTC 13.5 (prebuilt.cubin;
#   the GPU's own NVRTC is 13.0, whose builds all other entries are)
set -uo pipefail
export PYTHONUNBUFFERED=1
ENTRIES="probe_m|;probe_pdp|;probe_pdd|;probe_pda|;probe_m135|;probe_pd135|" \
    ROUNDS=2 DEPTHS=0 OUT= timeout 590 bash scripts/ab_tg128.sh
