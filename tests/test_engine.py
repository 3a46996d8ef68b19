import threading
from dataclasses import replace

import pytest
import torch

from megadelta.config import tiny_config
from megadelta.engine import (BackendUnavailableError, Engine, ReferenceBackend, StopStringFilter,
                              select_backend)
from megadelta.sampling import SamplingParams
from megadelta.state import ContextLengthError, SequenceState
from megadelta.tokenizer import Tokenizer
from helpers import rel_err

MAX_SEQ_LEN = 128
PROMPT = "The capital of France is"
# Seeded sampling from the random model: a different token nearly every step.
SAMPLED = SamplingParams(temperature=1.0, seed=0, max_tokens=12)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return Engine.load(tiny_checkpoint, backend="reference", device="cpu", max_seq_len=MAX_SEQ_LEN)


@pytest.fixture(scope="module")
def sampled(engine):
    """The reference answer the stop tests cut up."""
    completion = engine.generate(PROMPT, SAMPLED)
    assert len(set(completion.token_ids)) >= 8, "the random model should vary its tokens"
    return completion


def test_load_picks_cpu_defaults(engine):
    assert engine.backend.name == "reference"
    assert engine.backend.model.dtype == torch.float32
    assert engine.state.max_seq_len == MAX_SEQ_LEN


def test_greedy_is_deterministic_and_stops_at_max_tokens(engine):
    params = SamplingParams(max_tokens=6)
    first, second = engine.generate(PROMPT, params), engine.generate(PROMPT, params)
    assert first == second
    assert len(first.token_ids) == 6 and first.finish_reason == "length"
    assert first.usage == {"prompt_tokens": len(engine.tokenizer.encode(PROMPT)),
                           "completion_tokens": 6, "total_tokens": first.prompt_tokens + 6}


def test_greedy_follows_the_model_argmax(engine):
    ids = engine.tokenizer.encode(PROMPT)
    model, state = engine.backend.model, engine.backend.new_state(MAX_SEQ_LEN)
    expected = [int(model.prefill(ids, state).argmax())]
    for _ in range(3):
        expected.append(int(model.decode(expected[-1], state).argmax()))
    assert engine.generate(ids, SamplingParams(max_tokens=4)).token_ids == expected


def test_seeded_sampling_is_reproducible(engine, sampled):
    assert engine.generate(PROMPT, SAMPLED) == sampled
    other = engine.generate(PROMPT, SamplingParams(temperature=1.0, seed=1, max_tokens=12))
    assert other.token_ids != sampled.token_ids


def test_stream_deltas_add_up_to_generate(engine, sampled):
    deltas = list(engine.stream(PROMPT, SAMPLED))
    assert "".join(d.text for d in deltas) == sampled.text
    assert [d.token_id for d in deltas] == sampled.token_ids
    assert [d.finish_reason for d in deltas] == [None] * 11 + ["length"]
    assert sampled.text == engine.tokenizer.decode(sampled.token_ids, skip_special=True)


def test_stop_string_cuts_the_output(engine, sampled):
    text = sampled.text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = engine.generate(PROMPT, replace(SAMPLED, stop=[stop]))
    assert cut.text == text[:text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.token_ids == sampled.token_ids[:len(cut.token_ids)]
    assert len(cut.token_ids) < len(sampled.token_ids)
    assert "".join(d.text for d in engine.stream(PROMPT, replace(SAMPLED, stop=[stop]))) == cut.text


def test_text_held_for_a_stop_string_is_released_when_it_is_not_one(engine, sampled):
    text = sampled.text
    never = text[len(text) // 2: len(text) // 2 + 3] + "\x00"  # begins like the output, never completes
    params = replace(SAMPLED, stop=[never])
    deltas = list(engine.stream(PROMPT, params))
    assert "".join(d.text for d in deltas) == text
    assert deltas[-1].finish_reason == "length"


def test_stop_token_id_ends_the_output(engine, sampled):
    stop_id = sampled.token_ids[2]
    end = sampled.token_ids.index(stop_id)
    result = engine.generate(PROMPT, replace(SAMPLED, stop_token_ids=[stop_id]))
    assert result.token_ids == sampled.token_ids[:end + 1]  # the stop token is reported...
    assert result.text == engine.tokenizer.decode(sampled.token_ids[:end])  # ...but not printed
    assert result.finish_reason == "stop"


def test_greedy_stop_token_id_ends_the_device_loop(engine):
    ids = engine.tokenizer.encode("one two three four")
    full = engine.generate(ids, SamplingParams(max_tokens=5))
    result = engine.generate(ids, SamplingParams(max_tokens=5, stop_token_ids=[full.token_ids[1]]))
    assert result.token_ids == full.token_ids[:full.token_ids.index(full.token_ids[1]) + 1]
    assert result.finish_reason == "stop"


def test_requests_do_not_leak_into_each_other(engine):
    params = SamplingParams(max_tokens=5)
    before = engine.generate(PROMPT, params)
    engine.generate("Something else entirely, and longer than the first prompt", SAMPLED)
    assert engine.generate(PROMPT, params) == before
    fresh = Engine(engine.backend, engine.tokenizer, MAX_SEQ_LEN)
    assert fresh.generate(PROMPT, params) == before


def test_chat_applies_the_template(engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    params = SamplingParams(max_tokens=4)
    expected = engine.generate(engine.tokenizer.apply_chat_template(messages), params)
    assert engine.chat(messages, params) == expected
    assert "".join(d.text for d in engine.stream_chat(messages, params)) == expected.text


def test_prompt_that_does_not_fit_is_refused_before_any_work(engine):
    with pytest.raises(ContextLengthError, match=rf"{MAX_SEQ_LEN + 5} tokens.*{MAX_SEQ_LEN}"):
        engine.stream([0] * (MAX_SEQ_LEN + 5))  # raises on the call, not on iteration
    with pytest.raises(ContextLengthError):
        engine.generate([0] * MAX_SEQ_LEN)  # no room for even one token


def test_max_tokens_is_clamped_to_the_room_left(engine):
    result = engine.generate([0] * (MAX_SEQ_LEN - 3), SamplingParams(max_tokens=50))
    assert len(result.token_ids) == 3 and result.finish_reason == "length"
    unlimited = engine.generate([0] * (MAX_SEQ_LEN - 2), SamplingParams(max_tokens=None))
    assert len(unlimited.token_ids) == 2


def test_bad_prompts_are_refused(engine):
    with pytest.raises(ValueError, match="empty"):
        engine.generate("")
    with pytest.raises(ValueError, match="token ids"):
        engine.generate([1, tiny_config().vocab_size])


def test_cancel_ends_the_stream_after_the_current_token(engine):
    cancel = threading.Event()
    deltas = []
    for delta in engine.stream(PROMPT, SamplingParams(max_tokens=50), cancel=cancel):
        deltas.append(delta)
        if len(deltas) == 3:
            cancel.set()
    assert len(deltas) == 4 and deltas[-1].finish_reason == "cancelled"
    assert engine.generate(PROMPT, SamplingParams(max_tokens=2), cancel=cancel).finish_reason == "cancelled"


def test_a_prompt_read_in_pieces_matches_one_piece(engine):
    """Each piece continues the state: the same tokens and the same states as one piece."""
    prompt = "A prompt long enough to be cut into several pieces of five tokens each"
    assert len(engine.tokenizer.encode(prompt)) > 10
    whole = engine.generate(prompt, SAMPLED)
    whole_state = {name: getattr(engine.state, name).clone()
                   for name in ("conv_state", "deltanet_state", "k_cache", "v_cache")}
    engine.backend.prefill_piece = 5
    try:
        assert engine.generate(prompt, SAMPLED) == whole
    finally:
        del engine.backend.prefill_piece  # back to the class's
    for name, expected in whole_state.items():
        assert rel_err(getattr(engine.state, name), expected) < 1e-5, name


def test_cancel_during_the_prompt_stops_between_pieces(tokenizer):
    engine = scripted(tokenizer, "Hello")
    cancel = threading.Event()
    pieces = []

    def prefill(token_ids, state):
        pieces.append(list(token_ids))
        if len(pieces) == 2:
            cancel.set()  # the client leaves while the second piece runs
        return ScriptedBackend.prefill(engine.backend, token_ids, state)

    engine.backend.prefill = prefill
    assert list(engine.stream(list(range(10)), cancel=cancel)) == []
    assert pieces == [[0, 1, 2, 3], [4, 5, 6, 7]]  # the third piece never ran
    cancelled = engine.generate(list(range(10)), cancel=cancel)
    assert cancelled.token_ids == [] and cancelled.finish_reason == "cancelled"
    assert engine.generate([1, 2], SamplingParams(max_tokens=1)).text == "Hello"  # the engine is free again


def test_threads_take_turns(engine):
    params = SamplingParams(max_tokens=8)
    expected = engine.generate(PROMPT, params)
    results = []

    def worker():
        for _ in range(3):
            results.append(engine.generate(PROMPT, params))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 9


def test_a_closed_stream_frees_the_engine(engine):
    stream = engine.stream(PROMPT, SamplingParams(max_tokens=20))
    next(stream)
    stream.close()
    assert len(engine.generate(PROMPT, SamplingParams(max_tokens=2)).token_ids) == 2


# ---- the text pipeline, driven by a scripted backend ------------------------------

class ScriptedBackend:
    """Emits a fixed token sequence (one-hot logits), whatever it is fed."""

    name = "scripted"
    prefill_piece = 4

    def __init__(self, script: list[int]):
        self.config, self.device, self.script = tiny_config(), torch.device("cpu"), script

    def new_state(self, max_seq_len: int) -> SequenceState:
        return SequenceState.empty(self.config, max_seq_len)

    def _logits(self, state: SequenceState) -> torch.Tensor:
        logits = torch.zeros(self.config.vocab_size)
        logits[self.script[self.steps]] = 1.0
        self.steps += 1
        return logits

    def prefill(self, token_ids, state):
        self.steps = 0
        state.position += len(token_ids)
        return self._logits(state)

    def decode(self, token_id, state):
        state.position += 1
        return self._logits(state)

    def decode_greedy(self, token_id, state, max_tokens, stop_ids):
        for _ in range(max_tokens):
            token_id = int(self.decode(token_id, state).argmax())
            yield token_id
            if token_id in stop_ids:
                return


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return Tokenizer.load(tiny_checkpoint)


def scripted(tokenizer, text: str, *extra_ids: int) -> Engine:
    return Engine(ScriptedBackend(tokenizer.encode(text) + list(extra_ids)), tokenizer, MAX_SEQ_LEN)


def test_end_of_turn_stops_unless_ignored(tokenizer):
    engine = scripted(tokenizer, "Hi there", tokenizer.im_end_id, *tokenizer.encode(" more"))
    done = engine.generate("x")
    assert done.text == "Hi there" and done.finish_reason == "stop"
    assert done.token_ids[-1] == tokenizer.im_end_id
    ignoring = engine.generate("x", SamplingParams(ignore_eos=True, max_tokens=len(engine.backend.script)))
    assert ignoring.text == "Hi there more" and ignoring.finish_reason == "length"


def test_stream_holds_back_a_possible_stop_string(tokenizer):
    engine = scripted(tokenizer, "Hello world, how are you?")
    deltas = list(engine.stream("x", SamplingParams(stop=["world peace"], max_tokens=7)))
    texts = [d.text for d in deltas]
    assert texts[:3] == ["Hello", " ", "world,"]  # "world" waited for the next token
    assert "".join(texts) == "Hello world, how are you?"


def test_stream_cuts_a_stop_string_across_tokens(tokenizer):
    engine = scripted(tokenizer, "Hello world, how are you?")
    deltas = list(engine.stream("x", SamplingParams(stop=["you", "d, h"], max_tokens=6)))
    assert "".join(d.text for d in deltas) == "Hello worl"  # the earliest stop string wins
    assert deltas[-1].finish_reason == "stop"


def test_stop_string_filter_keeps_the_longest_possible_start():
    f = StopStringFilter(["abcd", "cx"])
    assert f.push("zab") == "z"
    assert f.push("c") == ""  # "abc" could still become "abcd", "c" could become "cx"
    assert f.push("e") == "abce"
    assert f.finish("ab") == "ab"


# ---- backend selection ------------------------------------------------------------

def test_auto_on_cpu_is_the_reference():
    assert select_backend("auto", "cpu") is ReferenceBackend
    assert select_backend("reference", "cpu") is ReferenceBackend


def test_megakernel_needs_cuda():
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        select_backend("megakernel", "cpu")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        select_backend("fast", "cpu")


def test_load_refuses_a_context_beyond_the_model(tiny_checkpoint):
    with pytest.raises(ValueError, match="max_seq_len"):
        Engine.load(tiny_checkpoint, device="cpu", max_seq_len=10**7)


# ---- on a GPU: the engine over the megakernel --------------------------------------

@pytest.fixture(scope="module")
def small_confident_checkpoint(tmp_path_factory):
    """Qwen3.5-0.8B shapes cut to the first 4 layers (3 DeltaNet, 1 attention), with
    confident weights so greedy tokens do not flip between two bf16 backends."""
    from megadelta.checkpoint import make_random_checkpoint
    from megadelta.config import QWEN35_0_8B

    config = QWEN35_0_8B.replace(num_hidden_layers=4, layer_types=QWEN35_0_8B.layer_types[:4],
                                 name="qwen3.5-0.8b-4l")
    return make_random_checkpoint(tmp_path_factory.mktemp("small"), config, seed=0, confident=True)


@pytest.mark.gpu
def test_megakernel_engine_matches_the_reference(small_confident_checkpoint):
    kernel = Engine.load(small_confident_checkpoint, backend="megakernel", device="cuda", max_seq_len=1024)
    reference = Engine.load(small_confident_checkpoint, backend="reference", device="cuda",
                            max_seq_len=1024)
    assert kernel.backend.name == "megakernel"
    prompt = "The quick brown fox jumps over the lazy dog"
    greedy = SamplingParams(max_tokens=48, ignore_eos=True)
    expected = reference.generate(prompt, greedy)
    assert kernel.generate(prompt, greedy) == expected  # the on-device greedy loop

    # A near-zero temperature steps backend.decode instead of the device loop.
    stepped = kernel.generate(prompt, SamplingParams(max_tokens=48, ignore_eos=True,
                                                     temperature=1e-4, seed=0))
    assert stepped.token_ids == expected.token_ids

    # Leaving the device loop early, then asking again, starts from a clean state.
    stream = kernel.stream(prompt, greedy)
    next(stream)
    stream.close()
    assert kernel.generate(prompt, greedy) == expected
