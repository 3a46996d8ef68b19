"""Compile the megakernel at first use with NVRTC and cache the cubin on disk.

NVRTC is called through ctypes on the ``libnvrtc`` that the ``nvidia-cuda-nvrtc``
wheel (or a CUDA toolkit) provides, located by ``cuda.pathfinder``: no nvcc and
no CUDA headers are needed on a user's machine (the sources include none), and
no Python binding has to match the driver's version. The cache key is the hash
of the sources, the generated constants, the target architecture, the options
and the NVRTC version, so any change recompiles and nothing stale is reused.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from .codegen import render_constants

KERNEL_DIR = Path(__file__).parent
KERNEL_NAME = "megadelta_decode"
MAIN_SOURCE = "megakernel.cu"
OPTIONS = ("-std=c++17", "-default-device", "-lineinfo")


class CompileError(RuntimeError):
    """NVRTC rejected the sources; the message carries its log."""


@dataclass(frozen=True)
class Build:
    """``image``: a cubin for a real architecture (``sm_90a``), or for a virtual
    one (``compute_80``) PTX text, which the driver compiles when it loads it."""

    image: bytes
    log: str
    arch: str


def sources(config: ModelConfig) -> dict[str, str]:
    """Every file NVRTC sees, by include name: the CUDA sources plus the generated constants."""
    files = {p.name: p.read_text() for p in sorted(KERNEL_DIR.glob("*.cu*"))}
    files["model_constants.cuh"] = render_constants(config)
    return files


def cache_dir() -> Path:
    root = os.environ.get("MEGADELTA_CACHE")
    base = Path(root) / "kernels" if root else Path.home() / ".cache" / "megadelta" / "kernels"
    base.mkdir(parents=True, exist_ok=True)
    return base


# The NVRTC of this process and what chose it ($MEGADELTA_NVRTC, "" for the installed one).
_loaded: tuple[str, ctypes.CDLL] | None = None


def _load_nvrtc() -> ctypes.CDLL:
    """The process's NVRTC, loaded once. Two libnvrtc in one process mix: a
    build with 13.0 after one with 13.5 gave a cubin of neither, so
    ``$MEGADELTA_NVRTC`` must be set before the first build."""
    global _loaded
    choice = os.environ.get("MEGADELTA_NVRTC", "")
    if choice and not Path(choice).is_file():
        raise CompileError(f"$MEGADELTA_NVRTC names no file: {choice}")
    if _loaded is None:
        _loaded = choice, _load_nvrtc_file(Path(choice)) if choice else _load_installed_nvrtc()
    first, lib = _loaded
    if choice != first:
        raise CompileError(f"$MEGADELTA_NVRTC is {choice or 'unset'}, but this process already builds with "
                           f"{first or 'the installed NVRTC'}: one NVRTC a process, chosen before the first build")
    return lib


def _load_installed_nvrtc() -> ctypes.CDLL:
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        path = load_nvidia_dynamic_lib("nvrtc").abs_path
    except Exception as e:   # no wheel found: fall back to the system library
        path = "libnvrtc.so"
        try:
            return ctypes.CDLL(path)
        except OSError:
            raise CompileError("libnvrtc not found: install the nvidia-cuda-nvrtc wheel "
                               f"(pip install nvidia-cuda-nvrtc) or a CUDA toolkit ({e})") from None
    return ctypes.CDLL(path)


def _load_nvrtc_file(path: Path) -> ctypes.CDLL:
    """``$MEGADELTA_NVRTC``: this libnvrtc, e.g. the GPU machine's version on a
    machine that has another, so that offline SASS (kernels.sass_loops) is
    the SASS that runs: a different NVRTC schedules the kernel differently
    (docs/perf-notes.md, twentieth session). NVRTC opens its builtins library
    by name; loading the one beside it first makes that name resolve to it."""
    for builtins in sorted(path.parent.glob("libnvrtc-builtins.so.*")):
        if ".alt." not in builtins.name:
            ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(str(path))


class _Nvrtc:
    def __init__(self) -> None:
        self.lib = _load_nvrtc()
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise CompileError(f"{what} failed: {self.lib.nvrtcGetErrorString(status).decode()}")

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return f"{major.value}.{minor.value}"

    def compile(self, files: dict[str, str], main: str, options: list[str], ptx: bool) -> tuple[bytes, str]:
        lib, prog = self.lib, ctypes.c_void_p()
        headers = [name for name in files if name != main]
        n = len(headers)
        header_src = (ctypes.c_char_p * n)(*(files[h].encode() for h in headers))
        header_names = (ctypes.c_char_p * n)(*(h.encode() for h in headers))
        self.check(lib.nvrtcCreateProgram(ctypes.byref(prog), files[main].encode(), main.encode(),
                                          n, header_src, header_names), "nvrtcCreateProgram")
        try:
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            status = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            log_text = log.value.decode(errors="replace")
            if status != 0:
                raise CompileError(f"NVRTC could not compile {main} "
                                   f"({lib.nvrtcGetErrorString(status).decode()}):\n{log_text}")
            kind = "PTX" if ptx else "CUBIN"
            self.check(getattr(lib, f"nvrtcGet{kind}Size")(prog, ctypes.byref(size)), f"nvrtcGet{kind}Size")
            image = ctypes.create_string_buffer(size.value)   # PTX: with its terminating NUL
            self.check(getattr(lib, f"nvrtcGet{kind}")(prog, image), f"nvrtcGet{kind}")
            return image.raw, log_text
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvrtc_version() -> str:
    """The version of the NVRTC that builds the kernel here ("13.0")."""
    return _Nvrtc().version()


def compile_megakernel(config: ModelConfig, arch: str, use_cache: bool = True,
                       extra_options: tuple[str, ...] = ()) -> Build:
    """The megakernel for ``config`` on ``arch``: a cubin for ``sm_90a`` and the
    like; PTX for a virtual ``compute_80`` and the like (the GPU tests run the
    pre-Hopper code path on a Hopper GPU that way: the driver compiles the PTX
    of an older architecture for the GPU at hand)."""
    ptx = arch.startswith("compute_")
    nvrtc = _Nvrtc()
    files = sources(config)
    options = [f"--gpu-architecture={arch}", *OPTIONS, *extra_options]
    key = hashlib.sha256()
    for name in sorted(files):
        key.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    key.update(" ".join(options).encode() + nvrtc.version().encode())
    path = cache_dir() / f"{KERNEL_NAME}-{config.name}-{arch}-{key.hexdigest()[:24]}.{'ptx' if ptx else 'cubin'}"
    if use_cache and path.exists():
        return Build(path.read_bytes(), "", arch)
    image, log = nvrtc.compile(files, MAIN_SOURCE, options, ptx)
    if use_cache:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(image)
        tmp.replace(path)   # atomic: concurrent builders never see half a file
    return Build(image, log, arch)
