"""The reference model against Hugging Face transformers (the independent
oracle), and against itself: prefill/decode consistency, chunked vs recurrent
delta rule, state continuation."""

import pytest
import torch

from megadelta.checkpoint import load_weights, make_random_checkpoint
from megadelta.config import ATTENTION, DELTANET, QWEN35_0_8B, tiny_config
from megadelta.model import Qwen35Model
from megadelta.ops.deltanet import (causal_conv1d, chunked_gated_delta_rule, l2_normalize,
                                    recurrent_gated_delta_rule)
from megadelta.state import ContextLengthError, SequenceState
from helpers import rel_err

transformers = pytest.importorskip("transformers")

# Small configs that between them exercise every layer type, GQA in attention,
# grouped value heads in DeltaNet, other rotary fractions and layer orders.
CONFIGS = {
    "grouped": tiny_config(),
    "ungrouped-mha": tiny_config(linear_num_value_heads=2, num_key_value_heads=4, partial_rotary_factor=0.5),
    "attention-first": tiny_config(num_hidden_layers=5,
                                   layer_types=(ATTENTION, DELTANET, DELTANET, ATTENTION, DELTANET),
                                   num_attention_heads=6, num_key_value_heads=2, linear_num_key_heads=1,
                                   linear_num_value_heads=3, partial_rotary_factor=1.0),
}




@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request, tmp_path_factory):
    """A fresh random checkpoint directory, with the oracle loaded from it."""
    config = CONFIGS[request.param]
    path = tmp_path_factory.mktemp(request.param)
    make_random_checkpoint(path, config, seed=int(torch.randint(0, 2**31, ())))
    return config, path, load_oracle(path)


def load_oracle(path):
    return transformers.Qwen3_5ForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def oracle_logits(oracle, ids):
    with torch.no_grad():
        return oracle(torch.tensor([ids])).logits[0]


def load_reference(config, path):
    return Qwen35Model(config, load_weights(path, config, dtype=torch.float32), dtype=torch.float32)


@pytest.mark.parametrize("length", [1, 37, 64, 130])
def test_prefill_matches_transformers(checkpoint, length):
    config, path, oracle = checkpoint
    ids = torch.randint(0, config.vocab_size, (length,)).tolist()
    expected = oracle_logits(oracle, ids)
    model = load_reference(config, path)
    got = model.forward(ids, model.new_state(256), all_logits=True)
    assert rel_err(got, expected) < 1e-4
    for t in range(length):  # every position, not just on average
        assert rel_err(got[t], expected[t]) < 1e-4, t


def test_decode_matches_transformers(checkpoint):
    config, path, oracle = checkpoint
    ids = torch.randint(0, config.vocab_size, (70,)).tolist()
    expected = oracle_logits(oracle, ids)
    model = load_reference(config, path)
    state = model.new_state(128)
    got = [model.prefill(ids[:50], state)] + [model.decode(t, state) for t in ids[50:]]
    for t, logits in enumerate(got, start=49):
        assert rel_err(logits, expected[t]) < 1e-4, t


def test_prefill_then_decode_equals_longer_prefill(checkpoint):
    config, path, _ = checkpoint
    model = load_reference(config, path)
    ids = torch.randint(0, config.vocab_size, (90,)).tolist()
    n = 67
    split, whole = model.new_state(128), model.new_state(128)
    model.prefill(ids[:n], split)
    for t in ids[n:-1]:
        model.decode(t, split)
    last_split = model.decode(ids[-1], split)
    last_whole = model.prefill(ids, whole)
    assert rel_err(last_split, last_whole) < 1e-5
    assert split.position == whole.position == len(ids)
    for name in SequenceState.TENSORS:
        assert rel_err(getattr(split, name), getattr(whole, name)) < 1e-5, name


def test_prefill_continues_a_state(checkpoint):
    config, path, _ = checkpoint
    model = load_reference(config, path)
    ids = torch.randint(0, config.vocab_size, (100,)).tolist()
    two_parts = model.new_state(128)
    model.prefill(ids[:41], two_parts)
    got = model.prefill(ids[41:], two_parts)
    whole = model.new_state(128)
    expected = model.prefill(ids, whole)
    assert rel_err(got, expected) < 1e-5
    for name in SequenceState.TENSORS:
        assert rel_err(getattr(two_parts, name), getattr(whole, name)) < 1e-5, name


def test_context_limit_is_a_clear_error():
    config = tiny_config(vocab_size=1000, pad_token_id=0, eos_token_id=1)
    from megadelta.checkpoint import random_weights
    model = Qwen35Model(config, random_weights(config, seed=1))
    state = model.new_state(16)
    model.prefill(list(range(10)), state)
    with pytest.raises(ContextLengthError, match="exceed the context limit of 16"):
        model.prefill(list(range(7)), state)
    assert state.position == 10  # the failed call changed nothing


def random_delta_inputs(seq_len, heads=3, dk=16, dv=8, dtype=torch.float64):
    q = l2_normalize(torch.randn(seq_len, heads, dk, dtype=dtype)) * dk ** -0.5
    k = l2_normalize(torch.randn(seq_len, heads, dk, dtype=dtype))
    v = torch.randn(seq_len, heads, dv, dtype=dtype)
    g = -torch.rand(seq_len, heads, dtype=dtype) * 2
    beta = torch.rand(seq_len, heads, dtype=dtype)
    return q, k, v, g, beta


@pytest.mark.parametrize("seq_len,chunk", [(1, 64), (63, 64), (64, 64), (65, 64), (200, 32), (130, 16)])
def test_chunked_delta_rule_equals_recurrent(seq_len, chunk):
    inputs = random_delta_inputs(seq_len)
    initial = torch.randn(3, 16, 8, dtype=torch.float64)
    s_rec, s_chunk = initial.clone(), initial.clone()
    out_rec = recurrent_gated_delta_rule(*inputs, s_rec)
    out_chunk = chunked_gated_delta_rule(*inputs, s_chunk, chunk_size=chunk)
    assert rel_err(out_chunk, out_rec) < 1e-10
    assert rel_err(s_chunk, s_rec) < 1e-10


def test_causal_conv_continues_across_calls():
    channels, kernel, seq_len = 12, 4, 20
    x = torch.randn(seq_len, channels)
    weight = torch.randn(channels, kernel)
    whole_state = torch.randn(channels, kernel - 1)
    split_state = whole_state.clone()
    whole = causal_conv1d(x, weight, whole_state)
    split = torch.cat([causal_conv1d(x[:7], weight, split_state), causal_conv1d(x[7:], weight, split_state)])
    assert rel_err(split, whole) < 1e-6
    assert torch.equal(whole_state, x[-(kernel - 1):].T)


@pytest.mark.slow
def test_full_size_config_matches_transformers(tmp_path):
    """The real Qwen3.5-0.8B shapes (random weights) on a short prompt."""
    make_random_checkpoint(tmp_path, QWEN35_0_8B, seed=int(torch.randint(0, 2**31, ())))
    ids = torch.randint(0, QWEN35_0_8B.vocab_size, (24,)).tolist()
    expected = oracle_logits(load_oracle(tmp_path), ids)
    model = load_reference(QWEN35_0_8B, tmp_path)
    state = model.new_state(64)
    got = torch.cat([model.forward(ids[:20], state, all_logits=True),
                     torch.stack([model.decode(t, state) for t in ids[20:]])])
    for t in range(len(ids)):
        assert rel_err(got[t], expected[t]) < 1e-4, t
