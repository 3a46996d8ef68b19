"""``megadelta perplexity FILE``: the model's perplexity on a text file.

The text is tokenized (no special tokens) and run through the model in
windows of ``--window`` tokens, each continuing the state of the one before,
so the whole text is one context; every token after the first is scored by
the logits of the position before it. On a GPU the windows run through the
fast prefill, on the CPU (or with ``--backend reference``) through the
reference model.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

DEFAULT_WINDOW = 512


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help='text file ("-" reads stdin)')
    parser.add_argument("--model", metavar="DIR",
                        help="Hugging Face checkpoint directory (default: the embedded Qwen3.5-0.8B)")
    parser.add_argument("--backend", default="auto", choices=("auto", "reference", "fast"),
                        help="auto: the fast prefill on a CUDA GPU, else the reference model")
    parser.add_argument("--device", help="torch device (default: cuda if present)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="N",
                        help=f"tokens per forward pass (default {DEFAULT_WINDOW}); the context spans them all")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="score only the first N tokens")


def negative_log_likelihood(all_logits: Callable[[list[int]], torch.Tensor], token_ids: list[int],
                            window: int) -> tuple[float, int]:
    """Sum over t >= 1 of -log p(token t | tokens before it), and the number of
    tokens scored. ``all_logits(piece)`` continues one sequence by ``piece`` and
    returns its logits [len(piece), vocab]."""
    import torch.nn.functional as F

    total, scored = 0.0, 0
    for start in range(0, len(token_ids), window):
        piece = token_ids[start:start + window]
        targets = token_ids[start + 1:start + 1 + len(piece)]
        if not targets:
            break
        logits = all_logits(piece)[:len(targets)].float()
        target = logits.new_tensor(targets, dtype=logits.dtype).long()
        total += float(F.cross_entropy(logits, target, reduction="sum"))
        scored += len(targets)
    return total, scored


def run(args: argparse.Namespace) -> None:
    import torch

    from . import checkpoint
    from .engine import default_device
    from .tokenizer import Tokenizer

    if args.window < 1:
        raise ValueError(f"--window must be at least 1, got {args.window}")
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    model_dir = Path(args.model) if args.model else checkpoint.default_checkpoint(progress=sys.stderr.isatty())
    token_ids = Tokenizer.load(model_dir).encode(text)[:args.max_tokens]
    if len(token_ids) < 2:
        raise ValueError(f"{args.file}: perplexity needs at least 2 tokens, the text has {len(token_ids)}")

    device = torch.device(args.device) if args.device else default_device()
    fast = args.backend == "fast" or (args.backend == "auto" and device.type == "cuda")
    if fast and device.type != "cuda":
        raise ValueError(f"the fast backend needs a CUDA device, got {device}")
    dtype = torch.bfloat16 if fast else torch.float32
    config = checkpoint.load_config(model_dir)
    weights = checkpoint.load_weights(model_dir, config, dtype, device)
    if fast:
        from .prefill import FastPrefill
        from .state import SequenceState

        model = FastPrefill(config, weights, device, dtype)
        state = SequenceState.empty(config, len(token_ids), dtype, device)
        all_logits = lambda piece: model.prefill(piece, state, all_logits=True)  # noqa: E731
    else:
        from .model import Qwen35Model

        model = Qwen35Model(config, weights, dtype, device)
        state = model.new_state(len(token_ids))
        all_logits = lambda piece: model.forward(piece, state, all_logits=True)  # noqa: E731
    total, scored = negative_log_likelihood(all_logits, token_ids, args.window)
    print(f"perplexity {math.exp(total / scored):.4f} over {scored} tokens "
          f"({'fast prefill' if fast else 'reference'}, {device})")
