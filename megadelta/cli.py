"""The ``megadelta`` command line (also ``python -m megadelta``).

``generate``, ``chat`` and ``make-checkpoint`` live here. ``serve``, ``bench``
and ``perplexity`` live in their own modules, each exposing
``add_arguments(parser)`` and ``run(args)``; a module is imported only when its
subcommand is on the command line, so ``megadelta --help`` starts fast and
never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time

PROG = "megadelta"
# name -> (module with add_arguments/run, one-line help)
PLUGIN_COMMANDS = {
    "serve": ("megadelta.server", "run the OpenAI-compatible HTTP server"),
    "bench": ("megadelta.bench", "benchmark decode and prefill speed"),
    "perplexity": ("megadelta.perplexity", "measure perplexity on a text file"),
}

EXAMPLES = """\
examples:
  megadelta generate "Write a haiku about GPUs"           # chat template, greedy, streamed
  megadelta generate --raw --max-tokens 32 "Once upon a"   # plain completion of the text
  megadelta generate --temperature 0.7 --top-p 0.8 --seed 1 "Tell me a joke"
  echo "Hello" | megadelta generate --print-token-ids -    # prompt from stdin, ids as JSON
  megadelta chat --model ~/models/Qwen3.5-0.8B
  megadelta make-checkpoint --config tiny --seed 0 /tmp/tiny
  megadelta serve --port 8000

Without --model, megadelta runs its embedded default: a Qwen3.5-0.8B-shaped
checkpoint with random weights, built on first use (its text is gibberish).
"""

GENERATE_HELP = """\
The prompt is sent as a user message through the chat template unless --raw is
given. Text streams to stdout as it is produced; with --print-token-ids stdout
gets only the JSON list of generated ids (the end-of-turn token included).
"""

CHAT_HELP = """\
commands inside the chat:
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt (/system alone removes it)
  /help          list these commands
  /exit          quit (Ctrl-D works too)
Ctrl-C while the model answers stops that answer; the part already printed
stays in the conversation. Ctrl-C twice at the prompt quits.
"""


class UsageError(Exception):
    """A bad flag value found after parsing: reported like argparse's errors (exit 2)."""


# ---- shared flags -----------------------------------------------------------

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="DIR",
                       help="Hugging Face checkpoint directory (default: the embedded Qwen3.5-0.8B)")
    group.add_argument("--backend", default="auto", choices=("auto", "reference", "megakernel"),
                       help="auto (default): the PyTorch reference, until the megakernel passes its GPU "
                            "suite; megakernel: the CUDA decode megakernel (experimental)")
    group.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if present)")
    group.add_argument("--dtype", choices=("bfloat16", "float32", "float16"),
                       help="weights dtype (default: bfloat16 on CUDA, float32 on CPU)")
    group.add_argument("--max-seq-len", type=int, metavar="N",
                       help="context size to allocate (default: 32768 on GPU, 4096 on CPU)")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-tokens", type=int, default=256, metavar="N",
                       help="most tokens to generate (default 256)")
    group.add_argument("--temperature", type=float, default=0.0, metavar="T",
                       help="0 is greedy (default); higher is more random")
    group.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K likeliest tokens (0: off)")
    group.add_argument("--top-p", type=float, default=1.0, metavar="P",
                       help="keep the likeliest tokens holding probability P (1: off)")
    group.add_argument("--min-p", type=float, default=0.0, metavar="P",
                       help="drop tokens less likely than P x the likeliest (0: off)")
    group.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                       help="damp tokens already in prompt or output (1: off)")
    group.add_argument("--presence-penalty", type=float, default=0.0, metavar="X")
    group.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X")
    group.add_argument("--seed", type=int, help="seed for reproducible sampling")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop when TEXT is generated (repeatable; TEXT is not printed)")
    group.add_argument("--ignore-eos", action="store_true",
                       help="keep going past the end-of-turn token, up to --max-tokens")


def sampling_params_from_args(args: argparse.Namespace):
    from .sampling import SamplingParams

    try:
        return SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
            presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
            seed=args.seed, stop=args.stop, ignore_eos=args.ignore_eos)
    except ValueError as e:
        # Messages start with the field's name; the user typed the flag.
        message = re.sub(r"^(\w+)", lambda m: "--" + m[1].replace("_", "-"), str(e))
        raise UsageError(message) from None


def load_engine(args: argparse.Namespace):
    from .engine import Engine

    show_progress = sys.stderr.isatty()
    if show_progress:
        print(f"loading {args.model or 'the embedded default model'}...", file=sys.stderr)
    return Engine.load(args.model, backend=args.backend, device=args.device, dtype=args.dtype,
                       max_seq_len=args.max_seq_len, progress=show_progress)


# ---- generate -----------------------------------------------------------------

def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help='the prompt ("-" reads it from stdin)')
    parser.add_argument("--raw", action="store_true",
                        help="complete the prompt text as is, without the chat template")
    parser.add_argument("--system", metavar="TEXT", help="system prompt (chat template only)")
    parser.add_argument("--print-token-ids", action="store_true",
                        help="print the generated token ids as one JSON list instead of the text")
    parser.add_argument("--stats", action="store_true",
                        help="print token counts and speed to stderr afterwards")
    add_model_arguments(parser)
    add_sampling_arguments(parser)


def run_generate(args: argparse.Namespace) -> None:
    if args.raw and args.system:
        raise UsageError("--system needs the chat template; drop --raw or --system")
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    params = sampling_params_from_args(args)
    engine = load_engine(args)
    if args.raw:
        prompt_ids = engine.tokenizer.encode(prompt)
    else:
        prompt_ids = engine.chat_prompt_ids(chat_messages(args.system, [], prompt))

    started = time.perf_counter()
    first_token_at = None
    token_ids, finish = [], None
    for delta in engine.stream(prompt_ids, params):
        first_token_at = first_token_at or time.perf_counter()
        token_ids.append(delta.token_id)
        finish = delta.finish_reason
        if not args.print_token_ids:
            sys.stdout.write(delta.text)
            sys.stdout.flush()
    print(json.dumps(token_ids) if args.print_token_ids else "")
    if args.stats:
        print(format_stats(len(prompt_ids), len(token_ids), finish, started, first_token_at,
                           time.perf_counter()), file=sys.stderr)


def format_stats(n_prompt: int, n_generated: int, finish: str, started: float,
                 first_token_at: float, ended: float) -> str:
    decode_rate = (n_generated - 1) / (ended - first_token_at) if n_generated > 1 else 0.0
    return (f"[{n_prompt} prompt tokens, {n_generated} generated, finish: {finish}; "
            f"first token {1000 * (first_token_at - started):.0f} ms, "
            f"decode {decode_rate:.1f} tokens/s]")


def chat_messages(system: str | None, history: list[dict[str, str]], user: str) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return head + history + [{"role": "user", "content": user}]


# ---- chat ---------------------------------------------------------------------

def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", metavar="TEXT", help="system prompt")
    add_model_arguments(parser)
    add_sampling_arguments(parser)


class ChatSession:
    """The REPL: one conversation, answered by streaming from the engine."""

    PROMPT = ">>> "

    def __init__(self, engine, params, system: str | None):
        self.engine, self.params, self.system = engine, params, system
        self.history: list[dict[str, str]] = []

    def run(self) -> None:
        print(f"megadelta chat: {self.engine.config.name} on {self.engine.backend.device} "
              f"({self.engine.backend.name} backend). /help for commands, /exit or Ctrl-D to quit.",
              file=sys.stderr)
        interrupted = False
        while True:
            try:
                line = input(self.PROMPT).strip()
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                if interrupted:
                    print()
                    return
                print("\n(Ctrl-C again, /exit or Ctrl-D to quit)")
                interrupted = True
                continue
            interrupted = False
            if line.startswith("/"):
                if not self.command(line):
                    return
            elif line:
                self.answer(line)

    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, _, rest = line.partition(" ")
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.history.clear()
            print("(conversation cleared)")
        elif name == "/system":
            self.system = rest.strip() or None
            print(f"(system prompt {'set' if self.system else 'removed'})")
        elif name == "/help":
            print(CHAT_HELP, end="")
        else:
            print(f"(unknown command {name}; /help lists the commands)")
        return True

    def answer(self, user: str) -> None:
        from .state import ContextLengthError

        try:
            deltas = self.engine.stream_chat(chat_messages(self.system, self.history, user),
                                             self.params)
        except ContextLengthError as e:
            print(f"(too long for the context: {e}; /reset starts over)")
            return
        parts = []
        try:
            for delta in deltas:
                parts.append(delta.text)
                sys.stdout.write(delta.text)
                sys.stdout.flush()
        except KeyboardInterrupt:
            deltas.close()
            sys.stdout.write(" [stopped]")
        print()
        self.history += [{"role": "user", "content": user},
                         {"role": "assistant", "content": "".join(parts)}]


def run_chat(args: argparse.Namespace) -> None:
    params = sampling_params_from_args(args)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    ChatSession(load_engine(args), params, args.system).run()


# ---- make-checkpoint ----------------------------------------------------------

def add_make_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import PRESETS

    presets = ", ".join([*PRESETS, "tiny"])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to create (must be new or empty)")
    parser.add_argument("--config", default="qwen3.5-0.8b", metavar="PRESET|PATH",
                        help=f"a preset ({presets}) or a config.json / model directory "
                             f"(default qwen3.5-0.8b)")
    parser.add_argument("--seed", type=int, default=0, help="weights are a function of the seed (default 0)")
    parser.add_argument("--confident", action="store_true",
                        help="greedy decoding walks a long fixed token cycle with wide logit margins "
                             "(bf16 and float32 agree)")
    parser.add_argument("--layout", default="causal_lm", choices=("causal_lm", "conditional_generation"),
                        help="tensor names as Qwen3_5ForCausalLM saves them (default) or as the "
                             "published multimodal checkpoints")
    parser.add_argument("--shard-size", metavar="SIZE", type=parse_size,
                        help="split into safetensors shards of at most SIZE (e.g. 2GB, 500MiB)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"),
                        help="dtype of the matrices (default bfloat16)")


SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'2GB' -> 2000000000 (KB/MB/GB are decimal, KiB/MiB/GiB binary)."""
    number = text.strip().rstrip("bBiIkKmMgGtT")
    unit = text.strip()[len(number):].upper()
    try:
        size = int(float(number) * SIZE_UNITS[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 2GB or 500MiB)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return size


def resolve_config(name_or_path: str):
    from pathlib import Path

    from .config import PRESETS, ModelConfig, tiny_config

    if name_or_path == "tiny":
        return tiny_config()
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if Path(name_or_path).exists():
        return ModelConfig.from_json(name_or_path)
    raise UsageError(f"--config {name_or_path!r} is neither a preset ({', '.join([*PRESETS, 'tiny'])}) "
                     "nor an existing config.json or model directory")


def run_make_checkpoint(args: argparse.Namespace) -> None:
    from pathlib import Path

    config = resolve_config(args.config)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} already exists and is not an empty directory; "
                         "pick a new one (this never overwrites a checkpoint)")
    import torch

    from .checkpoint import make_random_checkpoint

    make_random_checkpoint(out_dir, config, args.seed, confident=args.confident, layout=args.layout,
                           max_shard_bytes=args.shard_size, dtype=getattr(torch, args.dtype),
                           progress=sys.stderr.isatty())
    print(f"wrote {out_dir} ({config.name}, {config.num_params() / 1e6:.1f}M parameters, "
          f"seed {args.seed}{', confident' if args.confident else ''})")


# ---- the parser and main --------------------------------------------------------

BUILTIN_COMMANDS = {
    "generate": (add_generate_arguments, run_generate,
                 "generate text for one prompt, streamed to stdout"),
    "chat": (add_chat_arguments, run_chat, "interactive multi-turn chat"),
    "make-checkpoint": (add_make_checkpoint_arguments, run_make_checkpoint,
                        "write a checkpoint with random weights"),
}


COMMAND_EPILOGS = {"generate": GENERATE_HELP, "chat": CHAT_HELP}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s subparser gets its arguments (for a
    plugin this imports its module)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run Qwen3.5 hybrid DeltaNet/attention models: generate, chat, "
                               "serve an OpenAI-compatible API, benchmark.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_arguments, run, help_text) in BUILTIN_COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  epilog=COMMAND_EPILOGS.get(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            add_arguments(sub)
        sub.set_defaults(run=run)
    for name, (module_name, help_text) in PLUGIN_COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = _import_plugin(name, module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def _import_plugin(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        print(f"{PROG} {name}: unavailable ({e})", file=sys.stderr)
        raise SystemExit(1) from None


def _version() -> str:
    from . import __version__

    return __version__


def _requested_command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_requested_command(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        args.run(args)
    except UsageError as e:
        parser.exit(2, f"{PROG} {args.command}: error: {e}\n")
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not worth a traceback.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError) as e:
        # Checkpoint, config and context-length errors are ValueErrors with a
        # message written for the user.
        parser.exit(1, f"{PROG} {args.command}: error: {e}\n")
    except RuntimeError as e:
        from .engine import BackendUnavailableError

        if not isinstance(e, BackendUnavailableError):
            raise
        parser.exit(1, f"{PROG} {args.command}: error: {e}\n")
    return 0
