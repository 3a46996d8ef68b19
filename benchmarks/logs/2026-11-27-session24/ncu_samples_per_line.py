"""Warp samples of two Nsight Compute SASS exports, per source location (session 24).

    MEGADELTA_NVRTC=<the GPU machine's libnvrtc> python3 ncu_samples_per_line.py \
        A.sass.csv.gz A.cubin B.sass.csv.gz B.cubin [--shift FILE:AFTER:LINES ...] [--top 40]

Each export (`ncu --import R --page source --print-source sass --csv`) is matched,
instruction by instruction, to `nvdisasm -c -gi` of the cubin that ran (build it
with the same NVRTC, e.g. `megadelta.kernels.build.compile_megakernel`; the
opcodes are checked). A location is the call site in megakernel.cu and the
innermost source line; --shift maps B's lines back to A's where B's source has
LINES more lines after line AFTER of FILE.
"""
import argparse
import collections
import csv
import gzip
import re
import subprocess
import sys

from megadelta.kernels.sass_loops import _cuda_tool

LINE = re.compile(r'//## File "[^"]*/([^"/]+)", line (\d+)(?: inlined at "[^"]*/([^"/]+)", line (\d+))?')
INSTRUCTION = re.compile(r"^\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;")


def located_instructions(cubin):
    text = subprocess.run([_cuda_tool("nvdisasm"), "-c", "-gi", cubin], check=True, capture_output=True,
                          text=True).stdout
    out, group, current = [], [], []
    for line in text.splitlines():
        m = LINE.search(line)
        if m:
            group.append(m.groups())
            continue
        m = INSTRUCTION.match(line)
        if m:
            if group:
                current, group = group, []
            out.append((m.group(2), current))
    return out


def location(group, shifts):
    def line(f, n):
        return n - sum(k for file, after, k in shifts if f == file and n > after)
    if not group:
        return "?"
    f, n = group[0][0], line(group[0][0], int(group[0][1]))
    site = next((line(cf, int(cl)) for _, _, cf, cl in group if cf == "megakernel.cu"), None)
    return f"mk:{site} {f}:{n}"


def samples(export, cubin, shifts):
    rows = list(csv.reader(gzip.open(export, "rt")))
    header, data = rows[1], rows[2:]
    col = {h: i for i, h in enumerate(header)}
    code = located_instructions(cubin)
    opcode = lambda s: re.sub(r"^@!?U?P[T\d]\s+", "", s.strip()).split(" ")[0]
    if len(code) != len(data) or any(opcode(c[0]) != opcode(r[col["Source"]]) for c, r in zip(code, data)):
        sys.exit(f"{export} is not the SASS of {cubin}")
    stalls = [h for h in header if h.startswith("stall_") and "(Not Issued)" not in h]
    per = collections.defaultdict(collections.Counter)
    for (_, group), r in zip(code, data):
        c = per[location(group, shifts)]
        c["samples"] += int(r[col["Warp Stall Sampling (All Samples)"]] or 0)
        c["executed"] += int(r[col["Instructions Executed"]] or 0)
        for s in stalls:
            c[s] += int(r[col[s]] or 0)
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a_csv"); ap.add_argument("a_cubin"); ap.add_argument("b_csv"); ap.add_argument("b_cubin")
    ap.add_argument("--shift", action="append", default=[])
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    shifts = [(f, int(a), int(k)) for f, a, k in (s.split(":") for s in args.shift)]
    A, B = samples(args.a_csv, args.a_cubin, []), samples(args.b_csv, args.b_cubin, shifts)
    ta, tb = (sum(v["samples"] for v in X.values()) for X in (A, B))
    print(f"samples {ta} / {tb} ({(tb - ta) / ta * 100:+.2f}%)")
    for k in sorted(set(A) | set(B), key=lambda k: -abs(B[k]["samples"] - A[k]["samples"]))[:args.top]:
        a, b = A[k], B[k]
        moved = sorted(((b[s] - a[s], s) for s in a.keys() | b.keys() if s.startswith("stall_")),
                       key=lambda x: -abs(x[0]))[:3]
        print(f"{k:36s} {a['samples']:8d} {b['samples']:8d} {b['samples'] - a['samples']:+8d}  executed "
              f"{a['executed']:10d} {b['executed']:10d}  " + " ".join(f"{s[6:]}{v:+d}" for v, s in moved))


if __name__ == "__main__":
    main()
