"""Run the megakernel's CUDA sources on the CPU, one std::thread per CUDA thread.

The unchanged stage sources are compiled with g++ against ``cpu_emulation.h``
(which stands in for ``common.cuh`` and the CUDA built-ins). This checks the
kernel's logic, indexing and barrier structure against the reference model on
a machine without a GPU; it is slow (seconds per step for a 4-layer model) and
says nothing about speed or the GPU memory model. Blocks run 128 threads here
(the GPU build uses 256), so configs need ``queries_per_kv_head + 2 <= 4``.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import torch

from ..config import ModelConfig
from ..megakernel import KernelBuffers, barrier_words
from ..state import SequenceState
from .build import KERNEL_DIR, MAIN_SOURCE, cache_dir, sources

EMULATED_THREADS = 128


class EmulatorUnavailable(RuntimeError):
    pass


def build_emulator(config: ModelConfig, kernel_options: tuple[str, ...] = ()) -> Path:
    """Compile (or reuse) the emulated kernel for ``config``; the path of the shared library.

    ``kernel_options`` are the build's macros (``-DNAME`` or ``-DNAME=VALUE``, as the GPU build
    takes them in ``kernel_options``), so an option's code path can be checked on the CPU."""
    not_macros = [o for o in kernel_options if not o.startswith("-D")]
    if not_macros:
        raise ValueError(f"the emulated build takes only macros (-DNAME[=VALUE]), not {not_macros}")
    compiler = shutil.which("g++")
    if compiler is None:
        raise EmulatorUnavailable("g++ is not installed")
    files = sources(config)
    files["common.cuh"] = (KERNEL_DIR / "cpu_emulation.h").read_text()
    files["emulated_main.cpp"] = (f'#include "{MAIN_SOURCE}"\n'
                                  + (KERNEL_DIR / "cpu_emulation_launch.inc").read_text())
    key = hashlib.sha256("".join(f"{n}\0{t}\0" for n, t in sorted(files.items())).encode()
                         + "\0".join(kernel_options).encode()).hexdigest()[:24]
    out = cache_dir() / f"emulated-{config.name}-{key}"
    library = out / "megakernel_emulated.so"
    if library.exists():
        return library
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    run = subprocess.run([compiler, "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread",
                          f"-DTHREADS={EMULATED_THREADS}", *kernel_options, "-I", str(out), "-o", str(library),
                          str(out / "emulated_main.cpp")], capture_output=True, text=True)
    if run.returncode != 0:   # the sources are wrong: a failure, not a missing tool
        raise RuntimeError(f"g++ could not build the emulated kernel:\n{run.stderr}")
    return library


class EmulatedKernel:
    """The kernel on CPU tensors: ``decode`` and ``decode_greedy`` as the backend has them."""

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor], grid: int, ring_bytes: int,
                 kernel_options: tuple[str, ...] = ()):
        """``ring_bytes``: each block's weight ring (the GPU gives it all spare shared memory);
        ``kernel_options``: the build's macros (``build_emulator``)."""
        self.config, self.grid, self.ring_bytes = config, grid, ring_bytes
        self.lib = ctypes.CDLL(str(build_emulator(config, kernel_options)))
        self.buffers = KernelBuffers(config, weights, torch.device("cpu"), grid)
        self.progress = torch.zeros(1, dtype=torch.int32)
        self.barrier = barrier_words(self.progress.data_ptr(), torch.device("cpu"))

    def _run(self, state: SequenceState, token_id: int, n_steps: int, tokens: torch.Tensor | None) -> None:
        state.check_room(n_steps)
        params = self.buffers.params(state, token_id, n_steps, barrier=self.barrier.data_ptr(),
                                     progress=self.progress.data_ptr(),
                                     tokens_out=0 if tokens is None else tokens.data_ptr(),
                                     logits=tokens is None, shared_bytes=0)   # emulate_launch sizes it
        self.lib.emulate_launch(ctypes.byref(params), self.grid, ctypes.c_uint(self.ring_bytes))

    def decode(self, token_id: int, state: SequenceState) -> torch.Tensor:
        self._run(state, token_id, 1, None)
        state.position += 1
        return self.buffers.logits.clone()

    def decode_greedy(self, token_id: int, state: SequenceState, n_steps: int) -> list[int]:
        tokens = torch.zeros(n_steps, dtype=torch.int32)
        self._run(state, token_id, n_steps, tokens)
        done = int(self.progress[0])
        state.position += done
        return tokens[:done].tolist()
