"""Reference forms of the model's non-matmul operators (float32, plain PyTorch).

Fused GPU kernels elsewhere in megadelta are tested against these.
"""
