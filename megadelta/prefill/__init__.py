"""Fast prefill: whole prompts at GEMM speed into a shared ``SequenceState``."""

from .fast_prefill import FastPrefill

__all__ = ["FastPrefill"]
