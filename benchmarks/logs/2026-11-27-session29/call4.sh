#!/usr/bin/env bash
# Call 4 (twenty-fifth session): how much of the layers' chain is the products'
# own time (what consuming a hand-off vector chunk by chunk, as it arrives, could
# hide) and how much the hand-offs themselves. probe-products-and-copies.patch:
#   PROBE_NO_LAYER_COPIES      the layers' pages land at once (16-byte token copies);
#                              the chain with free weight delivery (+4.5% in session 25)
#   PROBE_SKIP_LAYER_PRODUCTS  a layer matrix's unit costs its page wait, release and
#                              epilogue only (sums of 0)
# The output projection streams and multiplies as always. Outputs are garbage; the
# probes reschedule the kernel (a draw of +-2%), so only large differences count.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD
ENTRIES="tree|;tree|-DPROBE_NO_LAYER_COPIES;tree|-DPROBE_NO_LAYER_COPIES -DPROBE_SKIP_LAYER_PRODUCTS;tree|-DPROBE_SKIP_LAYER_PRODUCTS" \
    ROUNDS=2 DEPTHS=0 OUT=$OUT bash scripts/ab_tg128.sh 2>&1 | tee $OUT/call4-products-and-copies.txt
