"""Summary statistics over repeated timed runs.

Throughput is computed per run (tokens / seconds) and then summarised, the way
llama-bench does: the median is the headline figure, the sample standard
deviation (Bessel-corrected) says how much the runs disagree.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Summary:
    runs: int
    tok_s_median: float
    tok_s_std: float


def tokens_per_second(n_tokens: int, seconds: Sequence[float]) -> list[float]:
    if n_tokens <= 0:
        raise ValueError(f"a timed run must process at least one token, got {n_tokens}")
    if any(s <= 0 for s in seconds):
        raise ValueError(f"timed runs must take a positive time, got {list(seconds)}")
    return [n_tokens / s for s in seconds]


def summarize_rates(rates: Sequence[float]) -> Summary:
    if not rates:
        raise ValueError("no timed runs to summarise")
    std = statistics.stdev(rates) if len(rates) > 1 else 0.0
    return Summary(runs=len(rates), tok_s_median=statistics.median(rates), tok_s_std=std)


def summarize(n_tokens: int, seconds: Sequence[float]) -> Summary:
    return summarize_rates(tokens_per_second(n_tokens, seconds))


def energy_per_token(n_tokens: int, seconds: Sequence[float],
                     joules: Sequence[float]) -> tuple[float, float]:
    """(joules per token, average watts) over all timed runs together: one run's
    energy reading is only as fine as the counter's update period, so the
    runs are pooled rather than summarised one by one."""
    total_j, total_s = sum(joules), sum(seconds)
    return total_j / (n_tokens * len(joules)), total_j / total_s
