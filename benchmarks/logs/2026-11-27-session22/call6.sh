# Call 6: o published before the DeltaNet state is written back (probe_a), and
# also each in_proj row before its conv state shifts (tree), against main
# (probe_m): a warp's stores leave the SM in the order issued, so the
# hand-offs' words no longer queue behind 16 KB of state a recurrence item.
# The product loops are identical to main's (sass_loops). Two rounds, then
# the 0.8B megakernel GPU tests on the tree.
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
OUT= ENTRIES="probe_m|;probe_a|;tree|" ROUNDS=2 timeout 300 bash scripts/ab_tg128.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/megadelta-site .cache/bench-whl/*.whl >/dev/null
PYTHONPATH=/tmp/megadelta-site:$PWD MEGADELTA_CACHE=/tmp/mc timeout 200 python3 -m pytest -m gpu \
    tests/gpu/test_megakernel.py -k "0.8b or confident" -q -rs -p no:cacheprovider 2>&1 | tail -6
