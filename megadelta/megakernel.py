"""The megakernel backend: every decode step of the model in one persistent CUDA launch.

``decode`` runs one step and returns its logits; ``decode_greedy`` runs up to N
steps in one launch, feeding each argmax back on the device and streaming the
tokens to the host as they are produced. Prefill uses the fast prefill module
(or, with ``prefill="reference"``, the reference model in bf16 on the GPU);
both write the same ``SequenceState`` the kernel continues from.

Weights are repacked once for the kernel (see docs/megakernel.md): per layer one
input-projection matrix ([q|k|v|z|b|a] or [q,gate|k|v]), gate and up rows
interleaved, zero-centred norms stored as 1 + w; the embedding is used as is,
for the input row and as the tied output projection.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .bench.timing import best_trial_seconds
from .config import ModelConfig
from .kernels import driver
from .kernels.build import KERNEL_NAME, compile_megakernel
from .kernels.codegen import (
    BARRIER_WORDS,
    BLOCK_THREADS,
    HANDOFF_TIMED_OUT,
    SHARED_LINE,
    check_supported,
)
from .prefill import FastPrefill
from .prefill.fast_prefill import MAX_PIECE
from .prefill.weights import fuse_weights
from .state import ContextLengthError, SequenceState

MATRIX_DTYPE = torch.bfloat16
# Fields of struct LayerWeights (params.cuh), in order.
LAYER_FIELDS = ("input_norm", "post_norm", "w_in", "w_out", "conv_w", "a_log", "dt_bias", "out_norm",
                "q_norm", "k_norm", "w_gate_up", "w_down")
POLL_SECONDS = 20e-6
# Where the hand-off vector x_mid lies in memory moves tg128 by up to ~3% on
# the H100, each placement at the same speed in every process; x's placement
# matters less, the other vectors' not measurably (docs/perf-notes.md,
# fifteenth and sixteenth). The address inside a 2 MB segment decides, not the
# segment; with x_mid's middle on an 8 KB boundary its placements ran ~0.4%
# faster on average than at spread offsets, and one such placement untimed
# about as fast as the best of six timed ones at spread offsets. The rest of
# the rule is not known (likely how the L2 spreads lines over its slices), so
# the backend times a few such placements of each at start and keeps the
# fastest (~0.1 s a candidate).
PLACED_VECTORS = ("x_mid", "x")
# The grid: the co-resident blocks rounded down to a multiple of GRID_MULTIPLE.
# On the H100 (132 SMs) 128 blocks ran tg128 0.6% faster than 132 (nine pairs
# of processes, eight won; docs/perf-notes.md, seventeenth), while 130 ran as
# 132 did: not fewer blocks but even shares buy it. At 128 every block has the
# same share of each layer product but the DeltaNet in_proj (the 0.8B's unit
# counts 512, 2,560 and 3,584 are multiples of 128) and the combine's 2,048
# outputs fill exactly one round of half-warps. On the H200 (132 SMs too) all 132
# ran 1.0% faster than 128 (five pairs, twenty-second): the rule is the H100's.
GRID_MULTIPLE = 8
PLACEMENT_CANDIDATES = 6
PLACEMENT_TRIAL_STEPS = 32
PLACEMENT_TRIALS = 3
PLACEMENT_SEGMENT_BYTES = 2 << 20
PLACEMENT_BOUNDARY_BYTES = 8 << 10


class Params(ctypes.Structure):
    """struct Params of params.cuh, field for field."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "layers", "embed", "final_norm", "conv_state", "dn_state", "k_cache", "v_cache", "x", "x_mid", "h", "proj",
        "mixer_out", "attn_partial", "argmax_val", "argmax_idx", "logits", "barrier",
        "tokens_out", "progress", "stop_ids")] + [(name, ctypes.c_int32) for name in (
        "n_stop", "max_seq", "first_token", "position", "n_steps")] + [
        ("epoch", ctypes.c_uint32), ("shared_bytes", ctypes.c_int32)]


def pack_weights(config: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device
                 ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The kernel's layout of the weights: (global tensors, one dict per layer).
    The prefill's fused matrices, with gate and up rows interleaved and the
    zero-centred norms stored as 1 + w."""
    def plus_one(norm: torch.Tensor) -> torch.Tensor:
        return (1.0 + norm).contiguous()

    def interleave_rows(gate_up: torch.Tensor) -> torch.Tensor:
        """[gate; up] -> rows gate 0, up 0, gate 1, up 1, ..."""
        return gate_up.view(2, config.intermediate_size, -1).transpose(0, 1).reshape(gate_up.shape).contiguous()

    fused = fuse_weights(config, weights, MATRIX_DTYPE, device)
    layers = []
    for layer in fused.layers:
        m = layer.mixer
        packed = {"input_norm": plus_one(layer.input_norm), "post_norm": plus_one(layer.post_norm),
                  "w_gate_up": interleave_rows(layer.gate_up), "w_down": layer.down.contiguous(),
                  "w_in": m.in_proj, "w_out": m.out_proj}
        if layer.is_deltanet:
            packed.update(conv_w=m.conv, a_log=m.a_log, dt_bias=m.dt_bias, out_norm=m.norm)
        else:
            packed.update(q_norm=plus_one(m.q_norm), k_norm=plus_one(m.k_norm))
        layers.append(packed)
    return {"embed": fused.embed, "final_norm": plus_one(fused.final_norm)}, layers


def placed_copy(vector: torch.Tensor, k: int, of: int) -> torch.Tensor:
    """A zeroed tensor like ``vector`` in a segment of its own (the caching
    allocator gives a 2 MB request its own) with its middle on an 8 KB
    boundary of the address, the k-th of ``of`` such boundaries spread over the
    segment (to the 128-byte line): candidate placements alike in the low
    address bits, different in the higher ones."""
    segment = torch.zeros(PLACEMENT_SEGMENT_BYTES // vector.element_size(), dtype=vector.dtype, device=vector.device)
    base, half, step = segment.data_ptr(), vector.nbytes // 2, PLACEMENT_BOUNDARY_BYTES
    first = -(-(base + half) // step)
    last = (base + segment.nbytes - half) // step
    middle = (first + k * (last - first) // of) * step
    start = (middle - half - base) // 128 * 128 // vector.element_size()
    return segment[start:start + vector.numel()]


def barrier_words(report_address: int, device: torch.device) -> torch.Tensor:
    """Params::barrier: the grid barrier's arrival counter, the address where a
    timeout is reported (the host-mapped progress word), the output
    projection's claims counter, then the timing builds' records
    (kernels/codegen.py: OUTPUT_CLAIMS_AT, STAGE_CLOCK_AT, ...). The counters
    start at 0 and are never reset."""
    words = torch.zeros(BARRIER_WORDS, dtype=torch.int64, device=device)
    words[1] = report_address
    return words


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


class KernelBuffers:
    """Everything the kernel reads besides the state: packed weights, the layer
    pointer table and scratch (mostly tagged words) sized for ``grid`` blocks.
    Shared by the CUDA backend and the CPU emulator (``kernels/emulate.py``)."""

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device, grid: int):
        c, f32 = config, torch.float32
        self.config = config
        self.globals, self.layers = pack_weights(config, weights, device)
        self.layer_table = torch.tensor([[_ptr(layer.get(f)) for f in LAYER_FIELDS] for layer in self.layers],
                                        dtype=torch.int64).to(device)
        proj_rows = max(c.conv_dim + c.value_dim + 2 * c.linear_num_value_heads, 2 * c.q_size + 2 * c.kv_size)
        mixer_out = max(c.value_dim, c.q_size)
        # Tagged words (kernels/common.cuh) start with tag 0, which no layer has.
        def tagged(n: int) -> torch.Tensor:
            return torch.zeros(n, dtype=torch.int64, device=device)

        self.scratch = {
            "x": tagged(c.hidden_size),
            "x_mid": tagged(c.hidden_size),
            "h": tagged(c.intermediate_size),
            "proj": tagged(proj_rows),
            "mixer_out": tagged(mixer_out),
            "attn_partial": tagged(grid * c.queries_per_kv_head * (c.head_dim + 2)),
            "argmax_val": torch.empty(grid, dtype=f32, device=device),
            "argmax_idx": torch.empty(grid, dtype=torch.int32, device=device),
        }
        self.epoch = 1
        self.logits = torch.empty(c.vocab_size, dtype=f32, device=device)
        self.stop_ids = torch.empty(0, dtype=torch.int32, device=device)
        self.stop_id_list: list[int] = []   # the host's copy: reading the device's would synchronise

    def set_stop_ids(self, stop_ids: set[int]) -> None:
        """The stop-token set the next launches end on; copied to the device
        only when it changes (a copy is a host round trip before the launch)."""
        ids = sorted(stop_ids)
        if ids != self.stop_id_list:
            self.stop_ids = torch.tensor(ids, dtype=torch.int32).to(self.stop_ids.device)
            self.stop_id_list = ids

    def params(self, state: SequenceState, token_id: int, n_steps: int, barrier: int, progress: int,
               tokens_out: int, logits: bool, shared_bytes: int) -> Params:
        """The kernel argument for one launch; ``barrier``, ``progress`` and
        ``tokens_out`` are device addresses. Each call takes fresh layer tags."""
        s = self.scratch
        layers = n_steps * self.config.num_hidden_layers
        if self.epoch + layers >= 1 << 32:   # 32-bit tags: start again, far from any recent one
            self.epoch = 1
        epoch, self.epoch = self.epoch, self.epoch + layers
        return Params(
            layers=_ptr(self.layer_table), embed=_ptr(self.globals["embed"]),
            final_norm=_ptr(self.globals["final_norm"]),
            conv_state=_ptr(state.conv_state), dn_state=_ptr(state.deltanet_state),
            k_cache=_ptr(state.k_cache), v_cache=_ptr(state.v_cache),
            x=_ptr(s["x"]), x_mid=_ptr(s["x_mid"]), h=_ptr(s["h"]), proj=_ptr(s["proj"]), mixer_out=_ptr(s["mixer_out"]),
            attn_partial=_ptr(s["attn_partial"]), argmax_val=_ptr(s["argmax_val"]),
            argmax_idx=_ptr(s["argmax_idx"]), logits=_ptr(self.logits) if logits else 0, barrier=barrier,
            tokens_out=tokens_out, progress=progress,
            stop_ids=_ptr(self.stop_ids) if self.stop_ids.numel() else 0,
            n_stop=self.stop_ids.numel(), max_seq=state.max_seq_len, first_token=token_id,
            position=state.position, n_steps=n_steps, epoch=epoch, shared_bytes=shared_bytes)


def make_prefill(config: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device, kind: str):
    """``fast``: megadelta.prefill; ``reference``: the reference model in bf16."""
    if kind == "fast":
        return FastPrefill(config, weights, device)
    if kind == "reference":
        from .model import Qwen35Model

        return Qwen35Model(config, weights, dtype=MATRIX_DTYPE, device=device)
    raise ValueError(f"unknown prefill {kind!r}; choose fast or reference")


def grid_blocks(resident: int) -> int:
    """The launch's blocks: ``resident`` (what fits on the GPU at once) rounded
    down to a multiple of GRID_MULTIPLE, or all of them where fewer fit."""
    return resident - resident % GRID_MULTIPLE if resident >= GRID_MULTIPLE else resident


class MegakernelBackend:
    """The Backend protocol of docs/architecture.md on one CUDA device."""

    name = "megakernel"
    # Single-step mode (decode) launches once per step; decode_greedy launches
    # once for all its steps.
    kernel_launches_per_step = 1
    # The fast prefill's own piece (under 0.1 s on the H100), so that the
    # engine's pieces leave its graphs and splits as they are.
    prefill_piece = MAX_PIECE

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device | str,
                 prefill: str = "fast", kernel_options: tuple[str, ...] = (), arch: str | None = None,
                 placement_candidates: int = PLACEMENT_CANDIDATES, grid: int | None = None):
        """``kernel_options``: extra NVRTC options, e.g. ``("-DSTAGE_CLOCK=1",)``
        to time a variant. ``arch``: what to build for, by default the device's
        own architecture; a virtual one such as ``compute_80`` runs an older
        architecture's code path on this GPU (through the driver's PTX compiler).
        ``placement_candidates``: placements of each of PLACED_VECTORS timed at
        start (1: the first, untimed). ``grid``: blocks a launch, at most the
        co-resident ones (default: grid_blocks of them)."""
        self.config, self.device = config, torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the megakernel backend needs a CUDA device, got {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        check_supported(config)
        driver.ensure_context(self.device)
        if not driver.device_attribute(self.device, driver.CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH):
            raise RuntimeError(f"{torch.cuda.get_device_name(self.device)} cannot launch cooperative kernels")
        self.arch = arch or driver.arch_of(self.device)
        self.build = compile_megakernel(config, self.arch, extra_options=tuple(kernel_options))
        self.kernel = driver.Kernel(self.build.image, KERNEL_NAME)
        # A block takes all the shared memory it may have: struct Smem, the rest stages weights.
        optin = driver.device_attribute(self.device, driver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        static = self.kernel.attribute(driver.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
        # The dynamic part (struct Smem, then the ring) starts on the line after any static part.
        line_aligned_static = -(-static // SHARED_LINE) * SHARED_LINE
        self.shared_bytes = (optin - line_aligned_static) // SHARED_LINE * SHARED_LINE
        self.kernel.allow_dynamic_shared(self.shared_bytes)
        blocks_per_sm = self.kernel.max_active_blocks_per_sm(BLOCK_THREADS, self.shared_bytes)
        if blocks_per_sm < 1:
            raise RuntimeError(f"the megakernel does not fit on an SM of {torch.cuda.get_device_name(self.device)}")
        # Only co-resident blocks may wait at a grid barrier: at most what fits.
        resident = blocks_per_sm * driver.device_attribute(self.device, driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        self.grid = grid_blocks(resident) if grid is None else grid
        if not 1 <= self.grid <= resident:
            raise ValueError(f"grid must be 1 to {resident} blocks (those co-resident on this GPU), got {grid}")
        self.buffers = KernelBuffers(config, weights, self.device, self.grid)
        self.progress = driver.MappedInts(1)
        self.tokens = driver.MappedInts(1)
        self._publishing = False   # a greedy launch may still write progress and tokens
        self.barrier = barrier_words(self.progress.device_ptr, self.device)
        self.placement_seconds = {name: self._place_vector(name, placement_candidates) for name in PLACED_VECTORS}
        self._prefill = make_prefill(config, weights, self.device, prefill)

    # ---- Backend protocol ------------------------------------------------
    def new_state(self, max_seq_len: int) -> SequenceState:
        return SequenceState.empty(self.config, max_seq_len, MATRIX_DTYPE, self.device)

    def prefill(self, token_ids: list[int], state: SequenceState) -> torch.Tensor:
        self._check_state(state)
        return self._prefill.prefill(token_ids, state)

    def decode(self, token_id: int, state: SequenceState) -> torch.Tensor:
        """One step: feed ``token_id``, return the next position's logits [vocab] fp32."""
        self._check_state(state)
        self._check_token(token_id)
        state.check_room(1)
        self._launch(token_id, state, n_steps=1, logits=True, publish=False)
        state.position += 1
        with self._explain_failure():
            return self.buffers.logits.clone()

    def decode_greedy(self, token_id: int, state: SequenceState, max_tokens: int,
                      stop_ids: set[int]) -> Iterator[int]:
        """Feed ``token_id``, then yield up to ``max_tokens`` greedy tokens (stopping
        after one in ``stop_ids``), all from one launch. If the consumer stops early
        the launch still completes, and ``state`` reflects every step it ran. After
        the last token it returns without waiting for the launch to exit: the
        kernel has nothing left to write but its end, and later work on the
        stream runs after it (waiting cost ~0.15% of tg128, docs/perf-notes.md)."""
        self._check_state(state)
        self._check_token(token_id)
        if max_tokens <= 0:
            return
        n_steps = min(max_tokens, state.max_seq_len - state.position)
        if n_steps <= 0:
            state.check_room(1)
        stream = torch.cuda.current_stream(self.device)
        if self._publishing:   # an earlier generator, still open mid-launch, may still write the mapped buffers
            with self._explain_failure():
                stream.synchronize()
            self._publishing = False
        if self.tokens.n < n_steps:
            self.tokens = driver.MappedInts(n_steps)
        self.buffers.set_stop_ids(stop_ids)
        self._launch(token_id, state, n_steps=n_steps, logits=False, publish=True)
        self._publishing = True
        seen, last = 0, False
        try:
            while not last:
                with self._explain_failure():
                    done = driver.stream_done(stream.cuda_stream)
                published = self.progress.values[0]
                while seen < published:
                    token = self.tokens.values[seen]
                    seen += 1
                    last = seen == n_steps or token in stop_ids
                    yield token
                if done:
                    break
                # Poll without sleeping while the last step runs: a sleep lasts tens
                # of us on Linux whatever is asked, and would delay the last token.
                if seen < n_steps - 1:
                    time.sleep(POLL_SECONDS)
        finally:
            if not last:   # stopped early or failed: the launch may still be publishing
                with self._explain_failure():
                    stream.synchronize()
            self._publishing = False
            state.position += max(self.progress.values[0], 0)   # negative: a failed launch
        if seen == n_steps < max_tokens and self.tokens.values[seen - 1] not in stop_ids:
            raise ContextLengthError(f"the context limit of {state.max_seq_len} tokens was reached "
                                     f"after {n_steps} of {max_tokens} tokens")

    # ---- internals -------------------------------------------------------
    def _check_state(self, state: SequenceState) -> None:
        state.check_layout(self.config, MATRIX_DTYPE, self.device, "the megakernel (use new_state)", contiguous=True)

    def _check_token(self, token_id: int) -> None:
        if not 0 <= token_id < self.config.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary [0, {self.config.vocab_size})")

    @contextmanager
    def _explain_failure(self):
        """Turn the kernel's timeout reports (a grid barrier, a tagged hand-off) into a readable error."""
        try:
            yield
        except (RuntimeError, driver.CudaError) as e:
            report = self.progress.values[0]
            if report == HANDOFF_TIMED_OUT:
                raise RuntimeError("the megakernel timed out waiting for a stage's tagged outputs; "
                                   "the CUDA context is unusable") from e
            if report < 0:
                raise RuntimeError(f"the megakernel's grid barrier timed out with {-1 - report} of "
                                   f"{self.grid} blocks arrived; the CUDA context is unusable") from e
            raise

    def _place_vector(self, name: str, candidates: int) -> list[float]:
        """Place the tagged vector ``name`` at the fastest of ``candidates``
        placed copies, each timed by greedy launches on a scratch state (a
        single one is kept untimed); return each one's seconds a launch, the
        kept one's the least."""
        if candidates < 1:
            raise ValueError(f"placement_candidates must be at least 1, got {candidates}")
        scratch = self.buffers.scratch
        placements = [placed_copy(scratch[name], k, candidates) for k in range(candidates)]
        if candidates == 1:
            scratch[name] = placements[0]
            return []
        state = self.new_state(PLACEMENT_TRIAL_STEPS + 1)

        def launch() -> None:
            self._launch(1, state, PLACEMENT_TRIAL_STEPS, logits=False, publish=False)

        seconds = []
        with self._explain_failure():
            for vector in placements:
                scratch[name] = vector
                seconds.append(best_trial_seconds(self.device, launch, PLACEMENT_TRIALS))
        scratch[name] = placements[seconds.index(min(seconds))]
        return seconds

    def _launch(self, token_id: int, state: SequenceState, n_steps: int, logits: bool, publish: bool) -> None:
        self.progress.values[0] = 0
        args = self.buffers.params(state, token_id, n_steps, barrier=_ptr(self.barrier),
                                   progress=self.progress.device_ptr,
                                   tokens_out=self.tokens.device_ptr if publish else 0, logits=logits,
                                   shared_bytes=self.shared_bytes)
        self.kernel.launch_cooperative(self.grid, BLOCK_THREADS, self.shared_bytes,
                                       torch.cuda.current_stream(self.device).cuda_stream, args)
