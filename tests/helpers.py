"""Helpers shared by the test files. Importable as ``helpers``: pytest's default (prepend)
import mode puts tests/ on sys.path, for tests/gpu/ through tests/conftest.py."""

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in float64 (so a float32 reference is compared at full precision)."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())
