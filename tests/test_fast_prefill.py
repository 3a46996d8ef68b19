"""FastPrefill's PyTorch path (the CPU fallback) against the reference model, in float32."""

import pytest
import torch

from megadelta.checkpoint import random_weights
from megadelta.config import ATTENTION, DELTANET, tiny_config
from megadelta.model import Qwen35Model
from megadelta.prefill import FastPrefill
from megadelta.state import ContextLengthError
from helpers import rel_err

CONFIG = tiny_config()
MAX_SEQ = 512


@pytest.fixture(scope="module")
def models():
    weights = random_weights(CONFIG, seed=3, dtype=torch.float32)
    return (Qwen35Model(CONFIG, weights, torch.float32),
            FastPrefill(CONFIG, weights, "cpu", torch.float32, max_piece=100))




def assert_same_state(fast_state, ref_state, tol=1e-4):
    assert fast_state.position == ref_state.position
    n = ref_state.position
    for name in ("conv_state", "deltanet_state"):
        assert rel_err(getattr(fast_state, name), getattr(ref_state, name)) < tol, name
    for name in ("k_cache", "v_cache"):
        assert rel_err(getattr(fast_state, name)[:, :, :n], getattr(ref_state, name)[:, :, :n]) < tol, name


def random_tokens(n: int, seed: int) -> list[int]:
    return torch.randint(0, CONFIG.vocab_size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("length", [1, 3, 63, 64, 65, 230])   # 230: three pieces of at most 100
def test_prefill_matches_reference(models, length):
    ref, fast = models
    tokens = random_tokens(length, length)
    ref_state, fast_state = ref.new_state(MAX_SEQ), ref.new_state(MAX_SEQ)
    expected = ref.prefill(tokens, ref_state)
    got = fast.prefill(tokens, fast_state)
    assert got.shape == (CONFIG.vocab_size,) and got.dtype == torch.float32
    assert rel_err(got, expected) < 1e-4
    assert_same_state(fast_state, ref_state)


def test_last_layer_deltanet():
    """The last layer's output runs for the last position only: here a DeltaNet
    layer, whose state still takes every position."""
    config = tiny_config(layer_types=(ATTENTION, DELTANET, ATTENTION, DELTANET))
    weights = random_weights(config, seed=5, dtype=torch.float32)
    ref, fast = Qwen35Model(config, weights, torch.float32), FastPrefill(config, weights, "cpu", torch.float32)
    tokens = random_tokens(65, 5)
    ref_state, fast_state = ref.new_state(MAX_SEQ), ref.new_state(MAX_SEQ)
    assert rel_err(fast.prefill(tokens, fast_state), ref.prefill(tokens, ref_state)) < 1e-4
    assert_same_state(fast_state, ref_state)


def test_continuation_equals_one_prefill(models):
    ref, fast = models
    first, second = random_tokens(70, 1), random_tokens(2, 2)
    ref_state, fast_state = ref.new_state(MAX_SEQ), ref.new_state(MAX_SEQ)
    expected = ref.prefill(first + second, ref_state)
    fast.prefill(first, fast_state)
    got = fast.prefill(second, fast_state)
    assert rel_err(got, expected) < 1e-4
    assert_same_state(fast_state, ref_state)


def test_all_logits(models):
    ref, fast = models
    tokens = random_tokens(150, 7)
    expected = ref.forward(tokens, ref.new_state(MAX_SEQ), all_logits=True)
    got = fast.prefill(tokens, ref.new_state(MAX_SEQ), all_logits=True)
    assert got.shape == (150, CONFIG.vocab_size)
    assert rel_err(got, expected) < 1e-4


def test_bad_inputs(models):
    ref, fast = models
    with pytest.raises(ValueError, match="at least one token"):
        fast.prefill([], ref.new_state(8))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fast.prefill([CONFIG.vocab_size], ref.new_state(8))
    with pytest.raises(ContextLengthError):
        fast.prefill(random_tokens(9, 0), ref.new_state(8))
    bf16_state = Qwen35Model.new_state.__get__(ref)(8)
    bf16_state.k_cache = bf16_state.k_cache.bfloat16()
    with pytest.raises(ValueError, match="state.k_cache"):
        fast.prefill([1, 2], bf16_state)
