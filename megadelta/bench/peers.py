"""The systems measured side by side, all on the same checkpoint.

A timed system follows one small protocol, so every system gets the same
warm-up, repetitions, timing and energy reading:

* ``prepare(workload)``: untimed, once per workload (e.g. prefill the context
  a tgN@D run decodes at, and keep a snapshot of it);
* ``reset(workload)``: untimed, before every run (fresh or restored state);
* ``run(workload) -> int``: the timed region; returns the tokens it processed,
  which the runner checks against the workload.

llama.cpp runs its own timing loop in ``llama-bench``; its results are parsed
from ``llama-bench -o json``.
"""

from __future__ import annotations

import copy
import inspect
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..config import ModelConfig


@dataclass(frozen=True)
class Workload:
    """ppN: prefill N prompt tokens into an empty context. tgN@D: decode N
    tokens one at a time after an untimed prefill of D context tokens."""

    kind: str
    n: int
    depth: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("pp", "tg"):
            raise ValueError(f"workload kind must be 'pp' or 'tg', got {self.kind!r}")
        if self.n < 1 or self.depth < 0:
            raise ValueError(f"bad workload size n={self.n}, depth={self.depth}")
        if self.kind == "pp" and self.depth:
            raise ValueError("prefill is measured into an empty context only")

    @property
    def name(self) -> str:
        return f"{self.kind}{self.n}" + (f"@{self.depth}" if self.depth else "")

    @property
    def mean_context(self) -> float:
        """Positions already in context, averaged over the timed tokens."""
        return self.depth + self.n / 2

    @property
    def max_seq_len(self) -> int:
        # +1: a tg run feeds one start token before its N generated ones
        return self.depth + self.n + (1 if self.kind == "tg" else 0)


def random_tokens(config: ModelConfig, n: int, seed: int) -> list[int]:
    """Seeded random token ids: every system gets the same prompt, and no
    system benefits from a repeated token."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (n,), generator=g).tolist()


class TimedSystem(Protocol):
    name: str
    kernel_launches_per_step: int | None
    min_warmup: int

    def prepare(self, workload: Workload) -> None: ...

    def reset(self, workload: Workload) -> None: ...

    def run(self, workload: Workload) -> int: ...

    def close(self) -> None: ...


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here; the message is the reason recorded."""


# ---- megadelta backends ---------------------------------------------------

class MegadeltaSystem:
    """A megadelta backend (``megakernel`` or ``reference``) loaded through the
    engine. ppN times ``prefill``; tgN times ``decode_greedy`` over N tokens
    with no stop ids (the megakernel runs all N steps in one launch)."""

    # The fast prefill captures a length's CUDA graph the second time it sees
    # it (prefill/graphs.py): two warm-ups, so timed runs replay the graph (the
    # first H100 run, with one, timed the capture as its first sample).
    min_warmup = 2

    def __init__(self, model_dir: Path, backend: str, device: torch.device, dtype: torch.dtype,
                 max_seq_len: int, prompt: list[int]):
        from ..engine import BackendUnavailableError, Engine

        try:
            engine = Engine.load(model_dir, backend=backend, device=device, dtype=dtype,
                                 max_seq_len=max_seq_len)
        except BackendUnavailableError as e:
            raise PeerUnavailable(str(e)) from e
        self.name = f"megadelta-{backend}"
        self.backend = engine.backend
        self.state = engine.state
        self.prompt = prompt
        self.kernel_launches_per_step = getattr(self.backend, "kernel_launches_per_step", None)
        self._context = None

    def prepare(self, workload: Workload) -> None:
        self._context = None
        if workload.depth:
            self.state.reset()
            self.backend.prefill(self.prompt[:workload.depth], self.state)
            self._context = self.state.clone()

    def reset(self, workload: Workload) -> None:
        if self._context is None:
            self.state.reset()
        else:
            self.state = self._context.clone()

    def run(self, workload: Workload) -> int:
        if workload.kind == "pp":
            self.backend.prefill(self.prompt[:workload.n], self.state)
            return workload.n
        start = self.prompt[workload.depth]
        return len(list(self.backend.decode_greedy(start, self.state, workload.n, set())))

    def close(self) -> None:
        del self.backend, self.state, self._context


# ---- Hugging Face transformers -------------------------------------------

class HFTransformersSystem:
    """``AutoModelForCausalLM`` from the same checkpoint directory. ppN is one
    forward pass over N tokens (cache on, logits of the last position only, as
    megadelta's prefill); tgN is greedy ``generate`` with
    min_new_tokens = max_new_tokens = N, so end-of-sequence cannot cut it short.

    ``compile`` is transformers' own fast decode path: a ``StaticCache``, with
    which ``generate`` compiles its decode step (torch.compile, reduce-overhead)
    on CUDA. It only compiles decoding from a fresh static cache, so that peer
    measures tgN only; one cache is reused (reset in place) so captured graphs
    stay valid between runs."""

    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype,
                 max_seq_len: int, prompt: list[int], compile: bool):
        try:
            import transformers
        except ImportError:
            raise PeerUnavailable("transformers is not installed") from None
        self.name = "hf-transformers-compile" if compile else "hf-transformers-eager"
        self.kernel_launches_per_step = None
        # graphs are compiled and captured during the first calls
        self.min_warmup = 3 if compile else 0
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        except Exception as e:  # a config or checkpoint this transformers cannot read
            raise PeerUnavailable(f"transformers cannot load {model_dir}: {e}") from e
        self.model = model.to(device).eval()
        self.prompt = torch.tensor([prompt], device=device)
        self._text_config = self.model.config.get_text_config(decoder=True)
        self._static_cache = (transformers.StaticCache(config=self._text_config,
                                                       max_cache_len=max_seq_len)
                              if compile else None)
        # transformers renamed ``past_key_values`` to ``cache`` during 5.x
        params = inspect.signature(type(self.model).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._context = None
        self._cache = None

    def _dynamic_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self._text_config)

    @torch.inference_mode()
    def prepare(self, workload: Workload) -> None:
        self._context = None
        if self._static_cache is not None and (workload.kind == "pp" or workload.depth):
            raise PeerUnavailable("transformers compiles decoding from an empty static cache "
                                  "only; see hf-transformers-eager for this test")
        if workload.depth:
            self._context = self._dynamic_cache()
            self.model(self.prompt[:, :workload.depth], logits_to_keep=1,
                       **{self._cache_kwarg: self._context})

    @torch.inference_mode()  # the caches' tensors are inference tensors
    def reset(self, workload: Workload) -> None:
        if self._static_cache is not None:
            self._static_cache.reset()
            self._cache = self._static_cache
        elif self._context is not None:
            self._cache = copy.deepcopy(self._context)
        else:
            self._cache = self._dynamic_cache()

    @torch.inference_mode()
    def run(self, workload: Workload) -> int:
        cache = {self._cache_kwarg: self._cache}
        if workload.kind == "pp":
            self.model(self.prompt[:, :workload.n], logits_to_keep=1, **cache)
            produced = workload.n
        else:
            inputs = self.prompt[:, :workload.depth + 1]
            out = self.model.generate(inputs, attention_mask=torch.ones_like(inputs),
                                      do_sample=False, max_new_tokens=workload.n,
                                      min_new_tokens=workload.n, pad_token_id=0, **cache)
            produced = out.shape[1] - inputs.shape[1]
        # The cache must hold exactly what was timed on top of the untimed context;
        # anything else means transformers recomputed the context or ignored the cache.
        cached = self._cache.get_seq_length()
        if cached != workload.depth + workload.n:
            raise RuntimeError(f"transformers cache holds {cached} positions after {workload.name}, "
                               f"expected {workload.depth + workload.n}")
        return produced

    def close(self) -> None:
        del self.model, self._context, self._cache, self._static_cache


# ---- llama.cpp --------------------------------------------------------------

@dataclass(frozen=True)
class LlamaBenchEntry:
    """One test of ``llama-bench -o json``."""

    workload: Workload
    samples_ts: list[float]
    samples_ns: list[int]
    avg_ts: float
    stddev_ts: float
    model_type: str
    model_size: int
    build_commit: str
    backends: str
    n_gpu_layers: int


def parse_llama_bench(text: str) -> list[LlamaBenchEntry]:
    """Parse ``llama-bench -o json``: a JSON array with one object per test;
    a test is prompt processing when n_gen is 0 and generation when n_prompt is 0."""
    try:
        tests = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"llama-bench output is not JSON: {e}") from None
    if not isinstance(tests, list):
        raise ValueError("llama-bench -o json output must be a JSON array of tests")
    entries = []
    for t in tests:
        try:
            n_prompt, n_gen, depth = int(t["n_prompt"]), int(t["n_gen"]), int(t.get("n_depth", 0))
            if n_prompt and n_gen:
                raise ValueError(f"combined pp+tg test (n_prompt={n_prompt}, n_gen={n_gen}) "
                                 "is not a pp or tg test")
            workload = Workload("tg", n_gen, depth) if n_gen else Workload("pp", n_prompt)
            entries.append(LlamaBenchEntry(
                workload=workload, samples_ts=[float(x) for x in t["samples_ts"]],
                samples_ns=[int(x) for x in t.get("samples_ns", [])],
                avg_ts=float(t["avg_ts"]), stddev_ts=float(t["stddev_ts"]),
                model_type=str(t.get("model_type", "")), model_size=int(t.get("model_size", 0)),
                build_commit=str(t.get("build_commit", "")), backends=str(t.get("backends", "")),
                n_gpu_layers=int(t.get("n_gpu_layers", 0))))
        except (KeyError, TypeError) as e:
            raise ValueError(f"llama-bench test entry lacks a field or has a bad value: {e}") from None
    return entries


def llama_bench_commands(binary: Path, gguf: Path, workloads: list[Workload],
                         repetitions: int) -> list[list[str]]:
    """One llama-bench call for the prompt tests (at depth 0) and one for the
    generation tests (at every depth), so llama-bench runs no test we did not ask for."""
    base = [str(binary), "-m", str(gguf), "-r", str(repetitions), "-ngl", "99", "-o", "json"]
    pp = sorted({w.n for w in workloads if w.kind == "pp"})
    tg = sorted({w.n for w in workloads if w.kind == "tg"})
    depths = sorted({w.depth for w in workloads if w.kind == "tg"})
    commands = []
    if pp:
        commands.append(base + ["-p", _csv(pp), "-n", "0"])
    if tg:
        commands.append(base + ["-p", "0", "-n", _csv(tg), "-d", _csv(depths)])
    return commands


def run_llama_bench(binary: Path, gguf: Path, workloads: list[Workload], repetitions: int,
                    timeout_s: float = 3600) -> list[LlamaBenchEntry]:
    if not Path(binary).is_file():
        raise PeerUnavailable(f"llama-bench binary {binary} does not exist")
    if not Path(gguf).is_file():
        raise PeerUnavailable(f"GGUF file {gguf} does not exist")
    entries = []
    for cmd in llama_bench_commands(binary, gguf, workloads, repetitions):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            raise PeerUnavailable(f"llama-bench exited with {proc.returncode}: {' | '.join(tail)}")
        entries += parse_llama_bench(proc.stdout)
    return entries


def _csv(values) -> str:
    return ",".join(str(v) for v in values)
