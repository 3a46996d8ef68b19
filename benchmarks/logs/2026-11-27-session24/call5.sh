#!/usr/bin/env bash
# GPU tests after 13d6468 (prefill Triton kernels ask for FMA explicitly) and
# c06fe76 (NVRTC choice), and the GPU machine's NVRTC for the record.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
export PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/megadelta-cache
python3 -m pip list 2>/dev/null | grep -i "nvrtc\|^triton\|^torch "
python3 -c "from cuda.pathfinder import load_nvidia_dynamic_lib as l; from megadelta.kernels.build import nvrtc_version as v; print(l('nvrtc').abs_path, v())"
timeout 120 python3 -m megadelta.kernels.smoke 2>&1 | tail -3
timeout 300 python3 -m pytest -m gpu tests/gpu/test_prefill.py tests/test_engine.py tests/test_sampling.py tests/test_bench.py \
    -q -rs --timeout 280 -p no:cacheprovider 2>&1 | tee "$OUT/pytest-prefill.log" | tail -5
timeout 260 python3 -m pytest -m gpu tests/gpu/test_megakernel.py -k "0.8b or confident" \
    -q -rs --timeout 250 -p no:cacheprovider 2>&1 | tee "$OUT/pytest-megakernel.log" | tail -5
