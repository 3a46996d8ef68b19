"""Every loop of the compiled megakernel can be left.

A loop with no way out is how undefined behaviour in the CUDA sources shows up
on the GPU as a hang: `grid_warps()` once called itself, the compiler dropped
the unbounded recursion and with it every matrix-vector product's loop exit,
and the first launch on an H100 spun before the first grid barrier. The CPU
emulator cannot see this (it has its own thread-coordinate helpers), so this
test reads the control-flow graph of the kernel's PTX and checks that every
cycle has an edge out of it (or ends the thread)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from megadelta.config import QWEN35_0_8B
from megadelta.kernels.build import KERNEL_NAME, MAIN_SOURCE, sources

LABEL = re.compile(r"^(\$?[\w$]+):")
BRANCH = re.compile(r"^(@!?%\w+\s+)?bra(\.uni)?\s+(\$?[\w$]+);")
ENDS_THREAD = re.compile(r"^(ret|exit|trap);")


def function_body(ptx: str, name: str) -> list[str]:
    """The instruction lines of one .entry or .func, comments and blank lines dropped."""
    start = ptx.index(f" {name}(")
    lines = ptx[start:].splitlines()
    first = lines.index("{") + 1
    body, depth = [], 1   # inline asm brings its own { } scopes
    for line in lines[first:]:
        line = line.split("//")[0].strip()
        depth += (line == "{") - (line == "}")
        if depth == 0:
            return body
        if line and line not in ("{", "}"):
            body.append(line)
    raise ValueError(f"unterminated function {name}")


def control_flow_graph(body: list[str]) -> tuple[dict[int, set[int]], set[int]]:
    """Basic blocks (numbered in order) -> successors, and the blocks that end the thread."""
    blocks: list[list[str]] = [[]]
    labels: dict[str, int] = {}
    for line in body:
        label = LABEL.match(line)
        if label:
            if blocks[-1]:
                blocks.append([])
            labels[label[1]] = len(blocks) - 1
            continue
        blocks[-1].append(line)
        if BRANCH.match(line) or ENDS_THREAD.match(line):
            blocks.append([])
    successors: dict[int, set[int]] = {i: set() for i in range(len(blocks))}
    ends: set[int] = set()
    for i, block in enumerate(blocks):
        last = block[-1] if block else ""
        branch = BRANCH.match(last)
        if branch:
            successors[i].add(labels[branch[3]])
        if any(ENDS_THREAD.match(line) for line in block):
            ends.add(i)
        unconditional = (branch and not branch[1]) or ENDS_THREAD.match(last)
        if not unconditional and i + 1 < len(blocks):
            successors[i].add(i + 1)
    return successors, ends


def cycles(successors: dict[int, set[int]]) -> list[set[int]]:
    """Strongly connected components that contain a cycle (Tarjan, iterative)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found = []
    for root in successors:
        if root in index:
            continue
        work = [(root, iter(sorted(successors[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors[node]:
                    found.append(component)
    return found


def loops_without_exit(ptx: str, name: str) -> list[set[int]]:
    successors, ends = control_flow_graph(function_body(ptx, name))
    return [c for c in cycles(successors)
            if not c & ends and all(successors[b] <= c for b in c)]


def test_loop_check_finds_an_endless_loop():
    ptx = """.visible .entry k(
)
{
\tmov.u32 \t%r1, 0;
$L__BB0_1:
\tadd.s32 \t%r1, %r1, 1;
\tsetp.lt.s32 \t%p1, %r1, 10;
\t@%p1 bra \t$L__BB0_1;
$L__BB0_2:
\tst.global.u32 \t[%rd1], %r1;
\tbra.uni \t$L__BB0_2;
}
"""
    endless = loops_without_exit(ptx, "k")
    assert len(endless) == 1 and len(cycles(control_flow_graph(function_body(ptx, "k"))[0])) == 2


@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_every_kernel_loop_can_exit(tmp_path, arch):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    for name, text in sources(QWEN35_0_8B).items():
        (tmp_path / name).write_text(text)
    run = subprocess.run([nvcc, "-ptx", f"-arch={arch}", "-std=c++17", "-o", str(tmp_path / "k.ptx"),
                          str(tmp_path / MAIN_SOURCE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    assert loops_without_exit(ptx, KERNEL_NAME) == []
