"""CPU emulation of a megakernel tree against the float32 reference, at short
contexts where STAGED_KV's staged path runs (chunks of at most 16 positions)
and one where it does not. Run from the repository root on a copy of the
candidate tree whose attention.cuh defines STAGED_KV as 1:

    python3 benchmarks/logs/2026-11-27-session25/emulate_staged_kv.py /tmp/probe_kv1

Session 25's output (STAGED_KV 1): logits within 4-8e-4 over 4 steps at
grid 2 / context 20, grid 2 / 9, grid 3 / 30 and grid 2 / 40 (unstaged);
KV caches within 1.7e-3 (bf16), the DeltaNet and conv states within 1e-6.
A staged read one row off (a mutation of the candidate) fails at all three
staged contexts (NaN logits; relative errors up to 1.0 before they turn NaN)
and passes at the unstaged one (4.4e-4), so the staged path is what these
contexts run.
"""
import sys

tree = sys.argv[1]
sys.path[:0] = [tree, "."]

import torch  # noqa: E402

from megadelta.checkpoint import random_weights  # noqa: E402
from megadelta.kernels.emulate import EmulatedKernel  # noqa: E402
from megadelta.model import Qwen35Model  # noqa: E402
from megadelta.state import SequenceState  # noqa: E402
from tests.test_kernels_compile import emulation_config  # noqa: E402

assert __import__("megadelta").__file__.startswith(tree), "the candidate tree must come first"
config = emulation_config(value_heads=4)
weights = random_weights(config, seed=int(torch.randint(1 << 30, ())))
ref = Qwen35Model(config, weights, dtype=torch.float32)
for grid, context in [(2, 20), (2, 9), (3, 30), (2, 40)]:
    kernel = EmulatedKernel(config, weights, grid=grid, ring_bytes=48 * 1024)
    rs = ref.new_state(context + 8)
    token = int(ref.prefill([(i * 37) % config.vocab_size for i in range(context)], rs).argmax())
    ks = SequenceState.empty(config, rs.max_seq_len, torch.bfloat16)
    ks.copy_from(rs)
    worst = 0.0
    for _ in range(4):
        got, want = kernel.decode(token, ks), ref.decode(token, rs)
        error = float((got - want).norm() / want.norm())
        worst = max(worst, error) if error == error else float("nan")   # NaN logits fail, not pass
        token = int(want.argmax())
    errors = {}
    for name in SequenceState.TENSORS:
        a, b = getattr(ks, name), getattr(rs, name)
        if "cache" in name:
            a, b = a[..., :rs.position, :], b[..., :rs.position, :]
        errors[name] = f"{float((a.float() - b).norm() / b.norm()):.1e}"
    print(f"grid {grid} context {context}: worst logits rel err {worst:.1e}; states {errors}", flush=True)
