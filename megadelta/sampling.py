"""Sampling: request parameters, logits processors and a seeded sampler.

Every step goes through the same pipeline on the CPU in float32, so a given
seed draws the same tokens whichever device produced the logits:

    penalties -> (argmax if temperature == 0) -> temperature -> top-k -> top-p -> min-p -> draw

Top-p keeps the most likely tokens until their mass reaches ``top_p``; min-p
keeps tokens at least ``min_p`` times as likely as the most likely one.

Penalties follow the usual conventions: ``repetition_penalty`` (CTRL / Hugging
Face) divides positive and multiplies negative logits of every token seen in
the prompt or the output; ``presence_penalty`` and ``frequency_penalty``
(OpenAI) subtract a constant, and a constant per occurrence, from the logits
of tokens already generated.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

MAX_SEED = 2**64


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. ``temperature == 0`` is greedy.

    ``max_tokens=None`` means "until the context is full". ``top_k=0``,
    ``top_p=1`` and ``min_p=0`` disable those filters. ``stop`` strings end the
    output and are not part of it; ``stop_token_ids`` end it too, in addition to
    the tokenizer's end-of-turn tokens unless ``ignore_eos`` is set.
    """

    max_tokens: int | None = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        # Accept a single stop string and any iterable, store tuples (the class is frozen).
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids or ()))
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        def is_int(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        need(self.max_tokens is None or (is_int(self.max_tokens) and self.max_tokens >= 1),
             f"max_tokens must be a positive integer or None, got {self.max_tokens!r}")
        need(math.isfinite(self.temperature) and self.temperature >= 0,
             f"temperature must be >= 0 (0 is greedy), got {self.temperature!r}")
        need(is_int(self.top_k) and self.top_k >= 0,
             f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        need(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p!r}")
        need(math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
             f"repetition_penalty must be > 0 (1 disables it), got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            need(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value!r}")
        need(self.seed is None or (is_int(self.seed) and 0 <= self.seed < MAX_SEED),
             f"seed must be an integer in [0, 2**64), got {self.seed!r}")
        need(all(isinstance(s, str) and s for s in self.stop),
             f"stop must be non-empty strings, got {list(self.stop)!r}")
        need(all(is_int(t) and t >= 0 for t in self.stop_token_ids),
             f"stop_token_ids must be non-negative integers, got {list(self.stop_token_ids)!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def has_penalties(self) -> bool:
        return (self.repetition_penalty != 1 or self.presence_penalty != 0
                or self.frequency_penalty != 0)

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the raw logits: a backend may run this loop on the device."""
        return self.greedy and not self.has_penalties


class Sampler:
    """Picks one token per step for one request and remembers what it picked
    (the penalties depend on it)."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int] = ()):
        self.params = params
        self.generated = Counter()
        self.seen = set(prompt_ids)  # repetition penalty covers prompt and output
        self.generator = torch.Generator(device="cpu")
        if params.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(params.seed)

    def __call__(self, logits: torch.Tensor) -> int:
        """Pick the next token from ``logits`` [vocab] (any device) and record it."""
        logits = self.penalize(logits.detach().to("cpu", torch.float32, copy=True))
        if self.params.greedy:
            token = int(torch.argmax(logits))
        else:
            probs, ids = self.candidates(logits)
            index = self.draw(probs)
            token = index if ids is None else int(ids[index])
        self.generated[token] += 1
        self.seen.add(token)
        return token

    def penalize(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the penalties in place to a CPU float32 copy of the logits."""
        p = self.params
        if p.repetition_penalty != 1 and self.seen:
            ids = torch.tensor(sorted(self.seen), dtype=torch.long)
            seen = logits[ids]
            logits[ids] = torch.where(seen > 0, seen / p.repetition_penalty,
                                      seen * p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and self.generated:
            ids = torch.tensor(list(self.generated), dtype=torch.long)
            counts = torch.tensor(list(self.generated.values()), dtype=torch.float32)
            logits[ids] -= p.presence_penalty + p.frequency_penalty * counts
        return logits

    def candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Probabilities after temperature, top-k, top-p and min-p, with the
        token ids they belong to (None: all tokens, in id order). Filtered-out
        tokens get probability 0; the rest are not renormalised (``draw``
        does not need it)."""
        p = self.params
        scaled = logits / p.temperature
        ids = None
        if 0 < p.top_k < scaled.numel():
            scaled, ids = torch.topk(scaled, p.top_k)  # sorted, most likely first
        elif p.top_p < 1:
            scaled, ids = torch.sort(scaled, descending=True)  # top-p needs the order
        probs = torch.softmax(scaled, dim=0)
        keep = torch.ones_like(probs, dtype=torch.bool)
        if p.top_p < 1:
            mass_before = torch.cumsum(probs, dim=0) - probs
            keep &= mass_before < p.top_p  # always keeps the most likely token
        if p.min_p > 0:
            keep &= probs >= p.min_p * probs.max()
        return torch.where(keep, probs, 0.0), ids

    def draw(self, probs: torch.Tensor) -> int:
        """Index drawn in proportion to ``probs`` (zeros are never drawn) by
        inverting the CDF at one seeded uniform."""
        cdf = torch.cumsum(probs.double(), dim=0)
        u = torch.rand((), generator=self.generator, dtype=torch.float64) * cdf[-1]
        return min(int(torch.searchsorted(cdf, u, right=True)), probs.numel() - 1)
