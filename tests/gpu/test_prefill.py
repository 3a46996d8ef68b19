"""The fast prefill on the GPU against the float32 reference model.

Fresh random weights every run (the seed is printed). Errors are relative,
||fast - ref|| / ||ref||, over the last-position logits and over every part of
the state a decode reads: conv inputs, DeltaNet states and the KV cache.
Run with -s to see the numbers.
"""

from __future__ import annotations

import random

import pytest
import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B
from megadelta.model import Qwen35Model
from megadelta.prefill import FastPrefill, torch_ops
from helpers import rel_err

pytestmark = pytest.mark.gpu

CONFIG = QWEN35_0_8B
TOL = 2e-2                 # bf16 projections against a float32 oracle
BF16_MARGIN = 1.5          # ... or this times the plain bf16 reference's error (confident weights)
STAGE_TOL = 5e-3           # one Triton stage against its PyTorch definition (tf32 products)
LENGTHS = [1, 63, 64, 65, 520, 4000, 20000]
MAX_SEQ = 20480




class Models:
    def __init__(self):
        self.seed = random.randrange(1 << 30)
        print(f"\nweights seed {self.seed} (confident)")
        weights = random_weights(CONFIG, self.seed, confident=True, device="cuda")
        self.ref = Qwen35Model(CONFIG, weights, dtype=torch.float32, device="cuda")
        self.ref_bf16 = Qwen35Model(CONFIG, weights, dtype=torch.bfloat16, device="cuda")
        self.fast = FastPrefill(CONFIG, weights, "cuda")

    def prompt(self, n: int, salt: int = 0) -> list[int]:
        rng = random.Random(self.seed * 31 + n + salt)
        return [rng.randrange(CONFIG.vocab_size) for _ in range(n)]


@pytest.fixture(scope="module")
def models() -> Models:
    return Models()


def state_errors(fast_state, ref_state) -> dict[str, float]:
    n = ref_state.position
    return {
        "conv": rel_err(fast_state.conv_state, ref_state.conv_state),
        "deltanet": rel_err(fast_state.deltanet_state, ref_state.deltanet_state),
        "k": rel_err(fast_state.k_cache[:, :, :n], ref_state.k_cache[:, :, :n]),
        "v": rel_err(fast_state.v_cache[:, :, :n], ref_state.v_cache[:, :, :n]),
    }


def errors_against_float32(models, tokens: list[int], prefill) -> tuple[dict, dict]:
    """(errors of ``prefill(state)``, errors of the plain bf16 reference), both
    against the float32 reference on ``tokens``. ``prefill`` fills a fresh state."""
    ref_state = models.ref.new_state(MAX_SEQ)
    expected = models.ref.prefill(tokens, ref_state)
    bf16_state = models.ref_bf16.new_state(MAX_SEQ)
    baseline = {"logits": rel_err(models.ref_bf16.prefill(tokens, bf16_state), expected),
                **state_errors(bf16_state, ref_state)}
    fast_state = models.ref_bf16.new_state(MAX_SEQ)
    got = prefill(fast_state)
    assert fast_state.position == len(tokens)
    return {"logits": rel_err(got, expected), **state_errors(fast_state, ref_state)}, baseline


def assert_within_bf16_tolerance(what: str, errors: dict, baseline: dict) -> None:
    """bf16 tolerance: TOL, or (on weights whose error grows past it) no worse than
    BF16_MARGIN times the plain bf16 reference's own error on the same input."""
    print(f"{what}: " + " ".join(f"{k} {v:.2e} (bf16 ref {baseline[k]:.2e})" for k, v in errors.items()))
    bad = {k: v for k, v in errors.items() if v > max(TOL, BF16_MARGIN * baseline[k])}
    assert not bad, f"{what}: {bad} against bf16 reference {baseline}"


@pytest.mark.parametrize("length", LENGTHS)
def test_prefill_matches_float32_reference(models, length):
    tokens = models.prompt(length)
    errors, baseline = errors_against_float32(models, tokens, lambda state: models.fast.prefill(tokens, state))
    assert_within_bf16_tolerance(f"T={length}", errors, baseline)


def test_continuation_equals_one_prefill(models):
    first, second = models.prompt(300), models.prompt(77, salt=1)

    def in_two_pieces(state):
        models.fast.prefill(first, state)
        return models.fast.prefill(second, state)

    errors, baseline = errors_against_float32(models, first + second, in_two_pieces)
    assert_within_bf16_tolerance("continuation", errors, baseline)


def test_graph_replay_matches_eager(models):
    tokens = models.prompt(200, salt=2)
    eager_state = models.ref_bf16.new_state(256)
    expected = models.fast._forward(models.fast._device_tokens(tokens), eager_state, False)
    for _ in range(3):      # the second call captures, the third replays
        state = models.ref_bf16.new_state(256)
        got = models.fast.prefill(tokens, state)
    assert 200 in models.fast.graphs.graphs
    eager_state.position = 200
    errors = {"logits": rel_err(got, expected), **state_errors(state, eager_state)}
    print("graph replay vs eager: " + " ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(e <= 1e-5 for e in errors.values()), errors


def test_decode_after_prefill_gives_reference_tokens(models):
    prompt = models.prompt(100, salt=3)

    def greedy(state, logits, steps=64):
        out = []
        for _ in range(steps):
            out.append(int(logits.argmax()))
            logits = models.ref_bf16.decode(out[-1], state)
        return out

    ref_state = models.ref_bf16.new_state(256)
    expected = greedy(ref_state, models.ref_bf16.prefill(prompt, ref_state))
    fast_state = models.ref_bf16.new_state(256)
    got = greedy(fast_state, models.fast.prefill(prompt, fast_state))
    print(f"decode after prefill: {sum(a == b for a, b in zip(got, expected))}/64 tokens agree")
    assert got == expected


@pytest.mark.parametrize("seq_len", [1, 65, 700])
def test_deltanet_kernels_match_torch(seq_len):
    from megadelta.prefill import triton_ops
    from megadelta.prefill.tune_deltanet import random_layer

    seed = random.randrange(1 << 30)
    proj, conv, state, w = random_layer(CONFIG, seq_len, "cuda", torch.bfloat16, torch.Generator().manual_seed(seed))
    conv_ref, state_ref = conv.clone(), state.clone()
    expected = torch_ops.deltanet(proj, conv_ref, state_ref, w, CONFIG)
    got = triton_ops.deltanet(proj, conv, state, w, CONFIG)
    errors = {"out": rel_err(got, expected), "state": rel_err(state, state_ref), "conv": rel_err(conv, conv_ref)}
    print(f"deltanet kernels vs torch, T={seq_len} (seed {seed}): "
          + " ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(e <= STAGE_TOL for e in errors.values()), errors
