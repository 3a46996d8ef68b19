import math
from collections import Counter

import pytest
import torch

from megadelta.sampling import Sampler, SamplingParams

# Four tokens with probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
LOGITS = PROBS.log()


def draw_counts(params: SamplingParams, logits: torch.Tensor, n: int = 3000) -> Counter:
    sampler = Sampler(params)
    return Counter(sampler(logits) for _ in range(n))


def test_same_seed_draws_the_same_tokens():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=123)
    a, b = Sampler(params), Sampler(params)
    run_a, run_b = [a(logits) for _ in range(50)], [b(logits) for _ in range(50)]
    assert run_a == run_b
    other = Sampler(SamplingParams(temperature=1.0, top_p=0.9, seed=124))
    assert [other(logits) for _ in range(50)] != run_a


def test_logits_dtype_does_not_change_the_draws():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(1)).bfloat16()
    params = SamplingParams(temperature=0.8, seed=7)
    a, b = Sampler(params), Sampler(params)
    assert [a(logits) for _ in range(30)] == [b(logits.float()) for _ in range(30)]


@pytest.mark.gpu
def test_cuda_logits_draw_like_cpu_logits():
    logits = torch.randn(248320, generator=torch.Generator().manual_seed(2))
    params = SamplingParams(temperature=1.0, top_k=50, top_p=0.95, seed=3)
    a, b = Sampler(params), Sampler(params)
    assert [a(logits) for _ in range(30)] == [b(logits.cuda()) for _ in range(30)]


def test_greedy_is_argmax_whatever_the_seed():
    logits = torch.randn(500, generator=torch.Generator().manual_seed(3))
    for seed in (None, 0, 1):
        assert Sampler(SamplingParams(temperature=0, seed=seed))(logits) == int(logits.argmax())


def test_temperature_one_draws_in_proportion():
    counts = draw_counts(SamplingParams(temperature=1.0, seed=0), LOGITS, n=6000)
    for token, p in enumerate(PROBS.tolist()):
        assert abs(counts[token] / 6000 - p) < 0.03


def test_top_k_keeps_the_k_likeliest():
    logits = torch.arange(10.0).flip(0) * 0.1  # token 0 likeliest; all fairly close
    counts = draw_counts(SamplingParams(temperature=1.0, top_k=3, seed=0), logits)
    assert set(counts) == {0, 1, 2}


def test_top_p_keeps_the_smallest_set_reaching_p():
    counts = draw_counts(SamplingParams(temperature=1.0, top_p=0.75, seed=0), LOGITS)
    assert set(counts) == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3
    assert abs(counts[0] / 3000 - 0.5 / 0.8) < 0.04  # renormalised over the kept set


def test_top_p_always_keeps_the_likeliest_token():
    counts = draw_counts(SamplingParams(temperature=1.0, top_p=0.01, seed=0), LOGITS, n=200)
    assert set(counts) == {0}


def test_min_p_drops_tokens_far_below_the_likeliest():
    counts = draw_counts(SamplingParams(temperature=1.0, min_p=0.25, seed=0), LOGITS)
    assert set(counts) == {0, 1, 2}  # 0.05 < 0.25 * 0.5 <= 0.15


def test_filters_combine():
    logits = torch.tensor([3.0, 2.9, 2.8, 2.7, 2.6, 2.5])
    alone = draw_counts(SamplingParams(temperature=1.0, top_p=0.9, seed=0), logits)
    both = draw_counts(SamplingParams(temperature=1.0, top_k=2, top_p=0.9, seed=0), logits)
    assert len(alone) >= 5 and set(both) == {0, 1}


def test_repetition_penalty_scales_prompt_and_output_logits():
    sampler = Sampler(SamplingParams(repetition_penalty=2.0), prompt_ids=[0, 1])
    logits = torch.tensor([2.0, -2.0, 2.0, 1.0])
    assert sampler.penalize(logits.clone()).tolist() == [1.0, -4.0, 2.0, 1.0]
    assert sampler(logits) == 2  # token 0 was penalised below token 2
    assert sampler.penalize(logits.clone()).tolist() == [1.0, -4.0, 1.0, 1.0]


def test_frequency_penalty_grows_with_each_occurrence():
    sampler = Sampler(SamplingParams(frequency_penalty=0.2))
    logits = torch.tensor([1.0, 0.9, 0.0])
    assert [sampler(logits) for _ in range(3)] == [0, 1, 0]
    # token 0 twice, token 1 once
    assert sampler.penalize(logits.clone()).tolist() == pytest.approx([0.6, 0.7, 0.0])


def test_presence_penalty_is_flat():
    sampler = Sampler(SamplingParams(presence_penalty=0.5))
    logits = torch.tensor([1.0, 0.9, 0.0])
    assert [sampler(logits) for _ in range(4)] == [0, 1, 0, 0]
    assert sampler.penalize(logits.clone()).tolist() == pytest.approx([0.5, 0.4, 0.0])


def test_no_penalty_leaves_the_logits_alone():
    sampler = Sampler(SamplingParams(), prompt_ids=[0, 1])
    logits = torch.tensor([1.0, -1.0, 0.5])
    sampler(logits)
    assert torch.equal(sampler.penalize(logits.clone()), logits)


def test_plain_greedy():
    assert SamplingParams().plain_greedy
    assert not SamplingParams(temperature=0.5).plain_greedy
    assert not SamplingParams(repetition_penalty=1.1).plain_greedy


def test_stop_accepts_one_string():
    params = SamplingParams(stop="\n\n", stop_token_ids=[5])
    assert params.stop == ("\n\n",) and params.stop_token_ids == (5,)


@pytest.mark.parametrize("field, value", [
    ("max_tokens", -1), ("max_tokens", 0), ("max_tokens", 2.5),
    ("temperature", -0.1), ("temperature", math.nan), ("temperature", math.inf),
    ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5), ("min_p", -0.1), ("min_p", 1.5),
    ("repetition_penalty", 0.0), ("presence_penalty", 2.5), ("frequency_penalty", -3.0),
    ("seed", -1), ("seed", 2**64), ("stop", [""]), ("stop_token_ids", [-1]),
])
def test_bad_values_are_refused_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        SamplingParams(**{field: value})


def test_unlimited_max_tokens_is_allowed():
    assert SamplingParams(max_tokens=None).max_tokens is None
