"""Are the products' unit loops the same machine code in two builds of the megakernel?

ptxas schedules the kernel as one function, so a change anywhere in it can
reorder the instructions of every product loop, and a tg128 A/B of the change
then measures a new schedule as well (docs/perf-notes.md: v31, v32 and v34's
first form). Compare a candidate's build with main's before timing it:

    python3 -m megadelta.kernels.sass_loops --b ../candidate          # two source trees
    python3 -m megadelta.kernels.sass_loops --b-option=-DPAGES_IN_FLIGHT=3

Each side is built with NVRTC as the package builds it (a cubin for sm_90a)
from the tree given (a directory holding the `megadelta` package; default the
one this module is in), disassembled with cuobjdump and nvdisasm (on PATH or
from the nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels), and each
innermost loop that reads shared memory and runs FMAs (a product's unit loop;
the attention partials' loop over positions, their warps' merge and the
DeltaNet recurrence are such loops too, so the 0.8B build shows 11 since v42,
whose claimed output chunks have a loop of their own) is compared as its
sequence of instructions with registers and constants blanked out. Loops are
paired by their lengths in address order, so a loop that one build adds or
drops is reported on its own and the others still meet their counterparts.
Exit status 1 when any differs. Needs no GPU.

Build with the NVRTC that the GPU machine builds with: another version
schedules the kernel differently (NVRTC 13.5 against the lent H100's 13.0:
every loop, and 1.8% of tg128; docs/perf-notes.md, twentieth session). The
version is printed first; `MEGADELTA_NVRTC=/path/to/libnvrtc.so.13` picks
the library (for example from `pip download nvidia-cuda-nvrtc==13.0.88`).

Identical loops are not enough: an edit that changed nothing a launch does
(a never-taken branch in two places) rescheduled four loops and cost 2.5% of
tg128, while another that rescheduled the same loops ran even
(docs/perf-notes.md, nineteenth session). So it also counts the instructions
of the whole kernel that differ, blanked the same way: code that has only
moved (a pad at the kernel's start) counts just the pad.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import PRESETS
from .build import nvrtc_version

_INSTRUCTION = re.compile(r"^\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;")
_PREDICATE = re.compile(r"^@!?U?P[T\d]\s+")
_OPERAND = re.compile(r"\bU?R\d+\b|\bU?P\d\b|\b0x[0-9a-f]+\b|-?\b\d+\b")


@dataclass
class Instruction:
    address: int
    text: str

    @property
    def opcode(self) -> str:
        return _PREDICATE.sub("", self.text).split(" ")[0].split(".")[0]


def parse_sass(text: str) -> list[Instruction]:
    """The instructions of cuobjdump -sass output, in address order."""
    out = []
    for line in text.splitlines():
        m = _INSTRUCTION.match(line)
        if m:
            out.append(Instruction(int(m.group(1), 16), m.group(2)))
    return out


def loops(code: list[Instruction]) -> list[tuple[int, int]]:
    """(first, last) indices of each loop: a backward branch and its target."""
    index = {ins.address: i for i, ins in enumerate(code)}
    found = []
    for i, ins in enumerate(code):
        m = re.search(r"0x([0-9a-f]+)", ins.text)
        target = int(m.group(1), 16) if ins.opcode == "BRA" and m else None
        if target is not None and target < ins.address and target in index:
            found.append((index[target], i))
    return found


def product_loops(code: list[Instruction]) -> list[list[Instruction]]:
    """The products' unit loops: loops that read shared memory and multiply,
    holding no such loop inside (the waits inside a unit loop are loops too).
    The attention partials' position loop and merge and the DeltaNet
    recurrence pass this test as well.
    Not the ranges that hold the producer's copies or the compiler's
    out-of-line paths of divergent shuffles (ENDCOLLECTIVE), which ptxas lays
    out after the compute code, behind branches that look like loops."""
    def multiplies(a: int, b: int) -> bool:
        ops = [ins.opcode for ins in code[a:b + 1]]
        return (ops.count("LDS") >= 4 and ops.count("FFMA") >= 16
                and not set(ops) & {"UBLKCP", "LDGSTS", "ENDCOLLECTIVE"})

    candidates = [(a, b) for a, b in loops(code) if multiplies(a, b)]
    return [code[a:b + 1] for a, b in candidates
            if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in candidates)]


def blanked(loop: list[Instruction]) -> list[str]:
    """A loop's instructions with registers, predicates and numbers blanked out."""
    return [_OPERAND.sub("_", ins.text) for ins in loop]


def _cuda_tool(name: str) -> str:
    """A CUDA toolkit binary from PATH or from NVIDIA's wheel of it (nvidia-cuda-<name>)."""
    found = shutil.which(name)
    if found:
        return found
    for root in sys.path:
        hits = glob.glob(os.path.join(root, "nvidia", "*", "bin", name))
        if hits:
            return hits[0]
    raise SystemExit(f"{name} not found: put the CUDA toolkit's bin on PATH or pip install nvidia-cuda-{name}")


def _disassemble(cubin: str) -> str:
    """cuobjdump -sass of a cubin; cuobjdump runs nvdisasm, which it looks for on PATH."""
    nvdisasm = os.path.dirname(_cuda_tool("nvdisasm"))
    env = {**os.environ, "PATH": nvdisasm + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([_cuda_tool("cuobjdump"), "-sass", cubin], check=True, capture_output=True, text=True,
                          env=env).stdout


def build_apart(tree: Path, config: str, arch: str, options: list[str] | tuple[str, ...], image: Path,
                env: dict[str, str] | None = None) -> str:
    """compile_megakernel in a process of its own, from the package in `tree`,
    with `env` added to the environment (e.g. $MEGADELTA_NVRTC: build.py loads
    one NVRTC a process): the image goes to `image`, NVRTC's log is returned."""
    program = ("import sys; from megadelta.config import PRESETS; "
               "from megadelta.kernels.build import compile_megakernel; "
               f"b = compile_megakernel(PRESETS[{config!r}], {arch!r}, use_cache=False, "
               f"extra_options=tuple({list(options)!r})); open({str(image)!r}, 'wb').write(b.image); "
               "sys.stdout.write(b.log)")
    run = subprocess.run([sys.executable, "-c", program], env={**os.environ, **(env or {}), "PYTHONPATH": str(tree)},
                         cwd=tree, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"building the megakernel from {tree} failed:\n{run.stderr}")
    return run.stdout


def build_sass(tree: Path, config: str, options: list[str]) -> str:
    """The SASS of the megakernel built from the package in `tree`."""
    with tempfile.TemporaryDirectory() as scratch:
        cubin = Path(scratch) / "megakernel.cubin"
        build_apart(tree, config, "sm_90a", options, cubin)
        return _disassemble(str(cubin))


def paired_loops(a: list[list[Instruction]], b: list[list[Instruction]]) -> list[tuple[int | None, int | None]]:
    """Index pairs (i in a, j in b) of the loops that correspond, in address
    order; None on the side that lacks a loop (one a change added or removed).
    Loops are aligned by their lengths: a rescheduled loop keeps its
    instruction count, so an added loop shifts no pairing after it."""
    matcher = difflib.SequenceMatcher(None, [len(x) for x in a], [len(y) for y in b], autojunk=False)
    pairs: list[tuple[int | None, int | None]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        common = min(i2 - i1, j2 - j1) if op == "replace" else (i2 - i1 if op == "equal" else 0)
        pairs += [(i1 + k, j1 + k) for k in range(common)]
        pairs += [(i, None) for i in range(i1 + common, i2)] + [(None, j) for j in range(j1 + common, j2)]
    return pairs


def compare(a: list[list[Instruction]], b: list[list[Instruction]]) -> bool:
    """Print each pair of product loops, in address order; True if all are the same."""
    same = True
    print(f"product loops: {len(a)} and {len(b)}")
    for i, j in paired_loops(a, b):
        if i is None or j is None:
            only, side = (b[j], "b") if i is None else (a[i], "a")
            print(f"  loop {'-' if i is None else i:>2} / {'-' if j is None else j:<2} at {only[0].address:#07x}:"
                  f" {len(only)} instructions, only in {side}")
            same = False
            continue
        bx, by = blanked(a[i]), blanked(b[j])
        verdict = "same" if bx == by else f"differ (similarity {difflib.SequenceMatcher(None, bx, by).ratio():.3f})"
        same &= bx == by
        print(f"  loop {i:2d} / {j:<2d} at {a[i][0].address:#07x} / {b[j][0].address:#07x}: {len(a[i])} / {len(b[j])}"
              f" instructions, {verdict}")
    return same


def differing_instructions(a: list[Instruction], b: list[Instruction]) -> int:
    """Instructions outside the runs that a and b share (blanked), each differing
    stretch counted on its longer side."""
    matcher = difflib.SequenceMatcher(None, blanked(a), blanked(b), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal")


def main() -> None:
    here = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="qwen3.5-0.8b", choices=sorted(PRESETS))
    parser.add_argument("--a", type=Path, default=here, help="tree of the first build (default: this one)")
    parser.add_argument("--b", type=Path, default=here, help="tree of the second build (default: this one)")
    parser.add_argument("--a-option", action="append", default=[], metavar="OPTION",
                        help="an NVRTC option of the first build (repeatable)")
    parser.add_argument("--b-option", action="append", default=[], metavar="OPTION",
                        help="an NVRTC option of the second build, e.g. --b-option=-DPAGES_IN_FLIGHT=3")
    args = parser.parse_args()
    print(f"NVRTC {nvrtc_version()}")
    a, b = (parse_sass(build_sass(tree.resolve(), args.config, options))
            for tree, options in ((args.a, args.a_option), (args.b, args.b_option)))
    same = compare(product_loops(a), product_loops(b))
    print(f"whole kernel: {len(a)} / {len(b)} instructions, {differing_instructions(a, b)} of them where the two differ")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
