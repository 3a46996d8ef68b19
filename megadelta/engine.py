"""The engine: load a model once, then generate, stream and chat.

One ``Engine`` owns one backend, one tokenizer and one ``SequenceState`` (the
KV cache is allocated once, at load). Requests run one at a time; each starts
from a reset state, so nothing of one request leaks into the next.

Greedy requests without penalties hand the whole loop to
``backend.decode_greedy`` (the megakernel runs it on the device); everything
else steps ``backend.decode`` and picks tokens with a ``Sampler``.

Token accounting: a request's ``token_ids`` are every token generated,
including the end-of-turn or stop token that ended it; its ``text`` never
contains a stop token's text nor a stop string.
"""

from __future__ import annotations

import logging
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import torch

from .config import ModelConfig
from .sampling import Sampler, SamplingParams
from .state import ContextLengthError, SequenceState
from .tokenizer import IncrementalDecoder, Tokenizer

log = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "megakernel")
CPU_MAX_SEQ_LEN = 4096
GPU_MAX_SEQ_LEN = 32768

__all__ = ["Backend", "BACKENDS", "BackendUnavailableError", "Completion", "ContextLengthError",
           "Delta", "Engine", "ReferenceBackend", "select_backend"]


class BackendUnavailableError(RuntimeError):
    """The backend asked for by name cannot run here."""


class Backend(Protocol):
    name: str
    config: ModelConfig
    device: torch.device
    # The engine feeds a prompt to prefill() in pieces of at most this many
    # tokens (each continuing the state) and checks for a cancel between them.
    prefill_piece: int

    def new_state(self, max_seq_len: int) -> SequenceState: ...

    def prefill(self, token_ids: list[int], state: SequenceState) -> torch.Tensor: ...

    def decode(self, token_id: int, state: SequenceState) -> torch.Tensor: ...

    def decode_greedy(self, token_id: int, state: SequenceState, max_tokens: int,
                      stop_ids: set[int]) -> Iterator[int]:
        """Feed ``token_id``, then yield up to ``max_tokens`` greedy tokens,
        stopping after one in ``stop_ids``."""
        ...


class ReferenceBackend:
    """The PyTorch reference model behind the Backend protocol."""

    name = "reference"
    # A few seconds of the 0.8B model in float32 on two CPU cores: a client that
    # leaves during a long prompt frees the server within that.
    prefill_piece = 256

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor],
                 device: torch.device | str):
        from .model import Qwen35Model

        self.config, self.device = config, torch.device(device)
        # The matrices carry the dtype the weights were loaded in.
        self.model = Qwen35Model(config, weights, dtype=weights["embed_tokens.weight"].dtype,
                                 device=self.device)

    def new_state(self, max_seq_len: int) -> SequenceState:
        return self.model.new_state(max_seq_len)

    def prefill(self, token_ids: list[int], state: SequenceState) -> torch.Tensor:
        return self.model.prefill(token_ids, state)

    def decode(self, token_id: int, state: SequenceState) -> torch.Tensor:
        return self.model.decode(token_id, state)

    def decode_greedy(self, token_id: int, state: SequenceState, max_tokens: int,
                      stop_ids: set[int]) -> Iterator[int]:
        for _ in range(max_tokens):
            token_id = int(torch.argmax(self.model.decode(token_id, state)))
            yield token_id
            if token_id in stop_ids:
                return


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def select_backend(name: str, device: torch.device | str):
    """The backend class for ``name`` on ``device``; every class is built as
    ``cls(config, weights, device)``. ``auto`` takes the megakernel on CUDA
    when it imports, and the reference model otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if name == "reference" or (name == "auto" and device.type != "cuda"):
        return ReferenceBackend
    if name == "megakernel" and device.type != "cuda":
        raise BackendUnavailableError(f"the megakernel backend needs a CUDA device, got {device}")
    try:
        from .megakernel import MegakernelBackend
    except Exception as e:  # a missing module, CUDA toolkit or driver all land here
        if name == "megakernel":
            raise BackendUnavailableError(f"the megakernel backend is unavailable: {e}") from e
        log.warning("megakernel backend unavailable (%s); using the reference backend", e)
        return ReferenceBackend
    return MegakernelBackend


def parse_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """The model dtype: float32 on CPU, bfloat16 on CUDA unless asked otherwise."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(names)}")
    return names[dtype]


@dataclass(frozen=True)
class Delta:
    """One generated token and the text it releases ("" while a multi-byte
    character or a possible stop string is incomplete). The last delta of a
    request carries the finish reason: "stop", "length" or "cancelled"."""

    text: str
    token_id: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.token_ids)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


class StopStringFilter:
    """Passes text through, holding back any tail that could be the start of a
    stop string until it is known not to be one, and cutting the text at the
    first stop string."""

    def __init__(self, stop: Sequence[str]):
        self.stop = tuple(stop)
        self.pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add text; return what can be released now. After a stop string is
        found, ``stopped`` is set and the text up to it is returned."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            released, self.pending = self.pending[:min(hits)], ""
            return released
        cut = len(self.pending) - self._possible_stop_start()
        released, self.pending = self.pending[:cut], self.pending[cut:]
        return released

    def finish(self, tail: str) -> str:
        """Add the last text and release everything not cut by a stop string."""
        released = self.push(tail)
        released, self.pending = released + self.pending, ""
        return released

    def _possible_stop_start(self) -> int:
        """Length of the longest tail of ``pending`` that begins a stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.pending)), longest, -1):
                if self.pending.endswith(s[:n]):
                    longest = n
                    break
        return longest


class Engine:
    """Requests run one at a time: a second one waits until the first ends. A
    stream holds the engine from its first token until it ends or is closed,
    so close (or finish) a stream before starting another request on the same
    thread."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, max_seq_len: int):
        self.backend, self.tokenizer, self.config = backend, tokenizer, backend.config
        self.max_seq_len = max_seq_len
        self.state = backend.new_state(max_seq_len)
        self.end_of_turn_ids = frozenset(tokenizer.stop_token_ids) | {self.config.eos_token_id}
        # One request at a time. A plain lock, not an RLock: a server may pull a
        # stream's tokens from different threads of a pool.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str | Path | None = None, backend: str = "auto",
             device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
             max_seq_len: int | None = None, progress: bool = False) -> "Engine":
        """Load a checkpoint directory (``None``: the embedded default model,
        built on first use).

        ``max_seq_len`` sizes the KV cache: by default the model's limit capped
        at 32768 tokens on a GPU and 4096 on the CPU. ``progress`` shows
        progress bars on stderr while building and loading."""
        from . import checkpoint

        device = torch.device(device) if device is not None else default_device()
        backend_cls = select_backend(backend, device)
        dtype = parse_dtype(dtype, device)
        model_dir = (Path(model) if model is not None
                     else checkpoint.default_checkpoint(progress=progress))
        config = checkpoint.load_config(model_dir)
        limit = config.max_position_embeddings
        if max_seq_len is None:
            max_seq_len = min(limit, GPU_MAX_SEQ_LEN if device.type == "cuda" else CPU_MAX_SEQ_LEN)
        elif not 1 <= max_seq_len <= limit:
            raise ValueError(f"max_seq_len must be between 1 and the model's limit of {limit}, "
                             f"got {max_seq_len}")
        weights = checkpoint.load_weights(model_dir, config, dtype, device, progress=progress)
        tokenizer = Tokenizer.load(model_dir)
        return cls(_build_backend(backend_cls, backend, config, weights, device), tokenizer,
                   max_seq_len)

    # ---- public API -------------------------------------------------------
    def generate(self, prompt: str | list[int], params: SamplingParams | None = None, *,
                 cancel: threading.Event | None = None) -> Completion:
        """Complete ``prompt`` (text, taken as is, or token ids)."""
        return self._collect(self._prompt_ids(prompt), params, cancel)

    def stream(self, prompt: str | list[int], params: SamplingParams | None = None, *,
               cancel: threading.Event | None = None) -> Iterator[Delta]:
        """Like ``generate`` but yields a ``Delta`` per token as it is produced.
        Bad requests raise here, before anything runs; setting ``cancel`` ends
        the stream after the current token."""
        return self._stream_ids(self._prompt_ids(prompt), params, cancel)

    def chat(self, messages: list[dict[str, str]], params: SamplingParams | None = None, *,
             cancel: threading.Event | None = None) -> Completion:
        """Answer a conversation (``[{"role": ..., "content": ...}, ...]``) through
        the chat template."""
        return self._collect(self.chat_prompt_ids(messages), params, cancel)

    def stream_chat(self, messages: list[dict[str, str]], params: SamplingParams | None = None,
                    *, cancel: threading.Event | None = None) -> Iterator[Delta]:
        return self._stream_ids(self.chat_prompt_ids(messages), params, cancel)

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    # ---- internals --------------------------------------------------------
    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt)
        ids = list(prompt)
        vocab = self.config.vocab_size
        bad = [t for t in ids if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompt token ids must be integers in [0, {vocab}), got {bad[:5]}")
        return ids

    def _collect(self, prompt_ids: list[int], params: SamplingParams | None,
                 cancel: threading.Event | None) -> Completion:
        deltas = list(self._stream_ids(prompt_ids, params, cancel))
        # No delta at all: cancelled during the prompt (Engine._prefill).
        return Completion(text="".join(d.text for d in deltas),
                          token_ids=[d.token_id for d in deltas], prompt_tokens=len(prompt_ids),
                          finish_reason=deltas[-1].finish_reason if deltas else "cancelled")

    def _stream_ids(self, prompt_ids: list[int], params: SamplingParams | None,
                    cancel: threading.Event | None) -> Iterator[Delta]:
        params = params or SamplingParams()
        max_new = self._room_for(prompt_ids, params)
        stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            stop_ids |= self.end_of_turn_ids
        return self._run(prompt_ids, params, max_new, stop_ids, cancel or threading.Event())

    def _room_for(self, prompt_ids: list[int], params: SamplingParams) -> int:
        """How many tokens this request may generate: max_tokens, capped so
        prompt + output fit in the context."""
        if not prompt_ids:
            raise ValueError("the prompt is empty; give at least one token")
        room = self.max_seq_len - len(prompt_ids)
        if room < 1:
            raise ContextLengthError(
                f"the prompt has {len(prompt_ids)} tokens but the context holds "
                f"{self.max_seq_len} (prompt and output together); shorten the prompt"
                " or load the model with a larger max_seq_len")
        return room if params.max_tokens is None else min(params.max_tokens, room)

    def _run(self, prompt_ids: list[int], params: SamplingParams, max_new: int,
             stop_ids: set[int], cancel: threading.Event) -> Iterator[Delta]:
        with self._lock:
            decoder = IncrementalDecoder(self.tokenizer)
            text = StopStringFilter(params.stop)
            with closing(self._tokens(prompt_ids, params, max_new, stop_ids, cancel)) as tokens:
                for n, token in enumerate(tokens, 1):
                    ended_by_id = token in stop_ids
                    piece = "" if ended_by_id else text.push(decoder.push(token))
                    finish = ("stop" if ended_by_id or text.stopped else
                              "length" if n == max_new else
                              "cancelled" if cancel.is_set() else None)
                    if finish is not None and not text.stopped:
                        # The end: whatever was held back was not a stop string after all.
                        piece += text.finish(decoder.flush())
                        finish = "stop" if text.stopped else finish
                    yield Delta(piece, token, finish)
                    if finish is not None:
                        return

    def _tokens(self, prompt_ids: list[int], params: SamplingParams, max_new: int,
                stop_ids: set[int], cancel: threading.Event) -> Iterator[int]:
        """The generated tokens, each yielded as soon as it exists; none if
        ``cancel`` is set while the prompt is read."""
        self.state.reset()
        sampler = Sampler(params, prompt_ids)
        logits = self._prefill(prompt_ids, cancel)
        if logits is None:
            return
        token = sampler(logits)
        yield token
        if token in stop_ids or max_new == 1:
            return
        if params.plain_greedy:
            yield from self.backend.decode_greedy(token, self.state, max_new - 1, stop_ids)
            return
        for _ in range(max_new - 1):
            token = sampler(self.backend.decode(token, self.state))
            yield token
            if token in stop_ids:
                return

    def _prefill(self, prompt_ids: list[int], cancel: threading.Event) -> torch.Tensor | None:
        """The prompt's last logits, read in the backend's prefill pieces; None
        if ``cancel`` is set between two pieces (a client gone, a shutdown)."""
        piece = self.backend.prefill_piece
        logits = None
        for start in range(0, len(prompt_ids), piece):
            if start > 0 and cancel.is_set():
                return None
            logits = self.backend.prefill(prompt_ids[start:start + piece], self.state)
        return logits


def _build_backend(backend_cls, requested: str, config: ModelConfig,
                   weights: dict[str, torch.Tensor], device: torch.device) -> Backend:
    try:
        return backend_cls(config, weights, device)
    except Exception as e:
        if requested != "auto" or backend_cls is ReferenceBackend:
            raise
        log.warning("megakernel backend failed to start (%s); using the reference backend", e)
        return ReferenceBackend(config, weights, device)
