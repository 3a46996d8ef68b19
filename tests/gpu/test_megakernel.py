"""The decode megakernel against the float32 reference model on the same weights,
for each config it is built for (0.8B, 2B, grouped value heads): the same checks.

Fresh random weights every run (the seed is printed); logits are compared by
relative error ||a - b|| / ||b|| with the float32 reference. The tolerance
tests start the kernel from the reference's prefilled state; the greedy tests
go end to end through the backend's own prefill (the bf16 reference here; fast
prefill has its own tests).
"""

from __future__ import annotations

import random
import time

import pytest
import torch

from megadelta.checkpoint import random_weights
from megadelta.config import QWEN35_0_8B, QWEN35_2B, QWEN35_GROUPED_VALUE, ModelConfig
from helpers import rel_err

pytestmark = pytest.mark.gpu

LOGITS_TOL = 2e-2
STATE_TOL = 2e-2
STEPS = 256
CONFIGS = [QWEN35_0_8B, QWEN35_2B, QWEN35_GROUPED_VALUE]


class Pair:
    """A megakernel backend and the float32 reference on the same fresh weights."""

    def __init__(self, config: ModelConfig, confident: bool = False, arch: str | None = None):
        from megadelta.megakernel import MegakernelBackend
        from megadelta.model import Qwen35Model

        self.seed = random.randrange(1 << 30)
        start = time.perf_counter()
        weights = random_weights(config, self.seed, confident=confident, device="cuda")
        self.config = config
        self.kernel = MegakernelBackend(config, weights, "cuda", prefill="reference", arch=arch)
        self.ref = Qwen35Model(config, weights, dtype=torch.float32, device="cuda")
        print(f"{config.name} ({self.kernel.arch}): weights seed {self.seed}, confident={confident}, "
              f"built in {time.perf_counter() - start:.1f} s")

    def prompt(self, n: int) -> list[int]:
        rng = random.Random(self.seed + n)
        return [rng.randrange(self.config.vocab_size) for _ in range(n)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.name)
def pair(request) -> Pair:
    return Pair(request.param)


def compare_decode(p: Pair, prompt_len: int, steps: int) -> None:
    """Prefill the reference and hand its state (KV cache rounded to bf16) to the
    kernel, so the comparison measures decode alone (a bf16 prefill alone is
    ~1.5e-2 off the float32 one); decode ``steps`` steps feeding both the
    reference's greedy token; check every step's logits and the states at the end."""
    max_seq = prompt_len + steps + 1
    ks, rs = p.kernel.new_state(max_seq), p.ref.new_state(max_seq)
    token = int(p.ref.prefill(p.prompt(prompt_len), rs).argmax())
    ks.copy_from(rs)
    worst = 0.0
    for step in range(steps):
        got, want = p.kernel.decode(token, ks), p.ref.decode(token, rs)
        err = rel_err(got, want)
        worst = max(worst, err)
        assert err <= LOGITS_TOL, f"step {step} after a {prompt_len}-token prompt: logits rel err {err:.3g}"
        token = int(want.argmax())
    print(f"{p.config.name} prompt {prompt_len}: worst logits rel err over {steps} steps {worst:.3g}")
    assert ks.position == rs.position == prompt_len + steps
    n = ks.position
    for name in ("conv_state", "deltanet_state"):
        err = rel_err(getattr(ks, name), getattr(rs, name))
        assert err <= STATE_TOL, f"{name} rel err {err:.3g}"
    for name in ("k_cache", "v_cache"):
        err = rel_err(getattr(ks, name)[:, :, :n], getattr(rs, name)[:, :, :n])
        assert err <= STATE_TOL, f"{name} rel err {err:.3g}"


@pytest.mark.parametrize("prompt_len", [1, 100, 3000])
def test_logits_and_state_match_reference(pair, prompt_len):
    compare_decode(pair, prompt_len, STEPS)


def test_requests_do_not_bleed(pair):
    prompt = pair.prompt(40)
    fresh = pair.kernel.new_state(80)
    pair.kernel.prefill(prompt, fresh)
    first = pair.kernel.decode(7, fresh)

    other = pair.kernel.new_state(80)   # an unrelated request runs in between
    pair.kernel.prefill(pair.prompt(33), other)
    list(pair.kernel.decode_greedy(5, other, 20, set()))

    fresh.reset()
    pair.kernel.prefill(prompt, fresh)
    again = pair.kernel.decode(7, fresh)
    assert rel_err(again, first) < 1e-5


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.name)
def confident(request) -> Pair:
    return Pair(request.param, confident=True)


def greedy_matches_reference(p: Pair, steps: int) -> None:
    prompt = p.prompt(20)
    ks, rs = p.kernel.new_state(300), p.ref.new_state(300)
    first = int(p.kernel.prefill(prompt, ks).argmax())
    assert first == int(p.ref.prefill(prompt, rs).argmax())
    got = list(p.kernel.decode_greedy(first, ks, steps, set()))
    want, token = [], first
    for _ in range(steps):
        token = int(p.ref.decode(token, rs).argmax())
        want.append(token)
    assert got == want
    assert ks.position == rs.position


def test_greedy_tokens_identical_on_confident_weights(confident):
    greedy_matches_reference(confident, STEPS)


def greedy_stops_at_stop_token(p: Pair) -> None:
    ks = p.kernel.new_state(100)
    first = int(p.kernel.prefill(p.prompt(10), ks).argmax())
    tokens = list(p.kernel.decode_greedy(first, ks, 30, set()))
    stop = tokens[12]
    cut = tokens.index(stop)
    ks2 = p.kernel.new_state(100)
    p.kernel.prefill(p.prompt(10), ks2)
    stopped = list(p.kernel.decode_greedy(first, ks2, 30, {stop}))
    assert stopped == tokens[:cut + 1]
    assert ks2.position == 10 + cut + 1


def test_greedy_stops_at_stop_token(confident):
    greedy_stops_at_stop_token(confident)


def test_pre_hopper_code_path_matches_reference():
    """The sm_80/86/89 build (cp.async copies by a whole producer warp, the
    168-register variant of every stage) on this GPU, through the driver's
    compiler for sm_80 PTX: single steps against the reference, then a greedy
    launch on confident weights and one that a stop token ends early."""
    p = Pair(QWEN35_0_8B, confident=True, arch="compute_80")
    compare_decode(p, 100, 32)
    greedy_matches_reference(p, 64)
    greedy_stops_at_stop_token(p)


def launched_kernels(prof) -> list[str]:
    """Names of the kernels the device ran (copies and memsets are not kernels)."""
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
            and not e.name.startswith(("Memcpy", "Memset"))]


def test_one_launch_per_step(pair):
    from torch.profiler import ProfilerActivity, profile

    state = pair.kernel.new_state(64)
    pair.kernel.prefill(pair.prompt(5), state)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(4):
            pair.kernel.decode(3, state)
        torch.cuda.synchronize()
    assert launched_kernels(prof) == ["megadelta_decode"] * 4

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        tokens = list(pair.kernel.decode_greedy(3, state, 16, set()))
        torch.cuda.synchronize()
    assert len(tokens) == 16
    assert launched_kernels(prof) == ["megadelta_decode"]
