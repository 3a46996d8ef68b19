"""``megadelta bench``: llama-bench-style runs of megadelta and its peers on
one checkpoint, with energy per token and the fraction of measured hardware
ceilings. See docs/benchmarking.md.

The CLI registers ``add_arguments(parser)`` and ``run(args)``;
``python -m megadelta.bench`` runs it standalone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

DEFAULT_OUTPUT = Path("benchmarks/results")


def int_list(text: str) -> list[int]:
    """'128,520,2048' -> [128, 520, 2048]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must not be negative, got {text!r}")
    return values


def name_list(text: str) -> frozenset[str]:
    return frozenset(v.strip() for v in text.split(",") if v.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint directory (default: the embedded random-weight "
                             "Qwen3.5-0.8B on a GPU, a tiny random config on the CPU)")
    parser.add_argument("-p", "--n-prompt", type=int_list, default=[520], metavar="N[,N...]",
                        help="prompt lengths for ppN tests, 0 for none (default: 520)")
    parser.add_argument("-n", "--n-gen", type=int_list, default=[128], metavar="N[,N...]",
                        help="generated tokens for tgN tests, 0 for none (default: 128)")
    parser.add_argument("--depth", type=int_list, default=[], metavar="D[,D...]",
                        help="also run tgN@D: decode N tokens after an untimed prefill of D")
    parser.add_argument("-r", "--repetitions", type=int, default=10,
                        help="timed runs per test (default: 10)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs before the timed ones (default: 1)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"results folder (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--device", default=None,
                        help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None,
                        help="model dtype (default: bfloat16 on a GPU, float32 on the CPU)")
    parser.add_argument("--hf-compile", action="store_true",
                        help="also run transformers with a static cache and torch.compile")
    parser.add_argument("--llama-bench", type=Path, default=None, metavar="BIN",
                        help="llama-bench binary to run as the llama.cpp peer (with --gguf)")
    parser.add_argument("--gguf", type=Path, default=None, metavar="FILE",
                        help="GGUF of the same model for llama.cpp")
    parser.add_argument("--systems", type=name_list, default=None, metavar="NAME[,NAME...]",
                        help="measure only these systems (default: all of megadelta-megakernel, "
                             "megadelta-reference, hf-transformers-eager, "
                             "hf-transformers-compile, llama.cpp); the others are listed as "
                             "not selected")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random prompts")
    parser.add_argument("--readme-table", type=Path, default=None, metavar="FILE.json",
                        help="print the markdown table of a saved result and exit")
    parser.add_argument("--results-index", type=Path, default=None, metavar="DIR",
                        help="write DIR/INDEX.md, a table of every saved result DIR/*.json, "
                             "and exit")


def run(args: argparse.Namespace) -> int:
    from . import report

    # a log file gets the full table, not 80 columns of truncated names
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.readme_table is not None:
        print(report.markdown(report.load(args.readme_table)), end="")
        return 0
    if args.results_index is not None:
        paths = sorted(args.results_index.glob("*.json"))
        if not paths:
            raise ValueError(f"--results-index: no *.json result files in {args.results_index}")
        index = args.results_index / "INDEX.md"
        index.write_text(report.results_index(paths))
        print(index)
        return 0

    import torch

    from ..engine import default_device, parse_dtype
    from .runner import Options, gpu_slug, run_benchmark

    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda":
        # an explicit index: NVML and the timing events need to know which GPU
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None
                              else device.index)
        torch.cuda.set_device(device)
    opts = Options(model=args.model, prompts=args.n_prompt, gens=args.n_gen, depths=args.depth,
                   repetitions=args.repetitions, warmup=args.warmup, device=device,
                   dtype=parse_dtype(args.dtype, device), hf_compile=args.hf_compile,
                   llama_bench=args.llama_bench, gguf=args.gguf, seed=args.seed,
                   systems=args.systems)
    doc = run_benchmark(opts, console)
    console.print(report.rich_table(doc))
    paths = report.write_all(doc, args.output, gpu_slug(doc["gpu"]["name"]))
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megadelta bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as e:
        parser.error(str(e))
