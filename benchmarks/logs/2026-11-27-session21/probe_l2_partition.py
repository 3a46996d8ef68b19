"""Probe 8: is an L2 line near or far from an SM, and does a hand-off's round
trip depend on it? The sixteenth session found that x_mid's offset inside a
2 MB segment sets tg128 (its middle on an 8 KB boundary helped on average) and
guessed the L2's slices or partitions. The H100's L2 is two partitions; an SM
reading a line homed in the other one crosses between them.

  a. latency map: one thread a block (one block an SM), 16 dependent
     ld.relaxed.gpu loads (the kernel's poll) of each 128-byte line of a 2 MB
     segment; the cycles a load, per block and line;
  b. the SMs grouped by which lines they find near, the lines' pattern in the
     address (run lengths, address bits);
  c. ping-pong between two blocks through two tagged lines (A stores, B polls
     and stores back, A polls): the round trip for each combination of the
     blocks' groups and the lines' homes, idle and while the other 130 blocks
     stream a 4 GB buffer from HBM (as the weight ring does).

    PYTHONPATH=$PWD python3 benchmarks/logs/2026-11-27-session21/probe_l2_partition.py out.json
"""
import ctypes
import json
import sys

import numpy as np
import torch

from megadelta.kernels.build import _Nvrtc
from megadelta.kernels.driver import Kernel, ensure_context

SOURCE = r"""
typedef unsigned long long u64;
struct MapArgs { const u64* buf; int lines; int reps; unsigned short* out; int* smids; };
struct PingArgs { u64* lines; int a; int b; int line_a; int line_b; int iters; long long* cycles;
                  const uint4* stream; u64 stream_vec; int load; u64* sink; };

__device__ __forceinline__ u64 ld_relaxed(const u64* p) {
    u64 v; asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ void st_relaxed(u64* p, u64 v) {
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" :: "l"(p), "l"(v) : "memory");
}

extern "C" __global__ void latency_map(MapArgs a) {
    if (threadIdx.x != 0) return;
    unsigned smid; asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    a.smids[blockIdx.x] = smid;
    u64 v = 0;
    for (int k = 0; k < a.lines; ++k) {
        int i = (k + blockIdx.x * 97) % a.lines;      // blocks start apart: no hot line
        const u64* p = a.buf + (size_t)i * 16;
        v = ld_relaxed(p + v);
        long long t0 = clock64();
        for (int r = 0; r < a.reps; ++r) v = ld_relaxed(p + v);   // each load waits for the last
        long long t = clock64() - t0 + (long long)v;
        a.out[(size_t)blockIdx.x * a.lines + i] = (unsigned short)min(t / a.reps, 65535LL);
    }
}

extern "C" __global__ void ping_pong(PingArgs a) {
    u64* la = a.lines + (size_t)a.line_a * 16;       // A writes, B polls
    u64* lb = a.lines + (size_t)a.line_b * 16;       // B writes, A polls
    u64* stop = a.lines + (size_t)4 * 16;            // a line no pair uses
    if (blockIdx.x == a.a) {
        if (threadIdx.x != 0) return;
        long long t0 = clock64();
        for (int it = 1; it <= a.iters; ++it) {
            st_relaxed(la, it);
            while (ld_relaxed(lb) != (u64)it) {}
        }
        a.cycles[0] = clock64() - t0;
        st_relaxed(stop, 1);
    } else if (blockIdx.x == a.b) {
        if (threadIdx.x != 0) return;
        for (int it = 1; it <= a.iters; ++it) {
            while (ld_relaxed(la) != (u64)it) {}
            st_relaxed(lb, it);
        }
    } else if (a.load) {
        // HBM load: 16-byte loads, 4 in flight a thread, grid-stride, until A is done.
        uint4 acc = make_uint4(0, 0, 0, 0);
        u64 mask = a.stream_vec - 1, stride = (u64)gridDim.x * blockDim.x * 4;   // a power of two
        u64 i = ((u64)blockIdx.x * blockDim.x + threadIdx.x) * 4;
        while (true) {
            for (int r = 0; r < 64; ++r) {
                uint4 x[4];
                for (int j = 0; j < 4; ++j)
                    asm volatile("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(x[j].x), "=r"(x[j].y),
                                 "=r"(x[j].z), "=r"(x[j].w) : "l"(a.stream + ((i + j) & mask)));
                for (int j = 0; j < 4; ++j) { acc.x ^= x[j].x; acc.y ^= x[j].y; acc.z ^= x[j].z; acc.w ^= x[j].w; }
                i = (i + stride) & mask;
            }
            if (ld_relaxed(stop) != 0) break;
        }
        if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x12345678u) a.sink[0] = 1;
    }
}
"""

SHARED = 200 * 1024     # one block an SM


class MapArgs(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("lines", ctypes.c_int), ("reps", ctypes.c_int),
                ("out", ctypes.c_void_p), ("smids", ctypes.c_void_p)]


class PingArgs(ctypes.Structure):
    _fields_ = [("lines", ctypes.c_void_p), ("a", ctypes.c_int), ("b", ctypes.c_int),
                ("line_a", ctypes.c_int), ("line_b", ctypes.c_int), ("iters", ctypes.c_int),
                ("cycles", ctypes.c_void_p), ("stream", ctypes.c_void_p), ("stream_vec", ctypes.c_uint64),
                ("load", ctypes.c_int), ("sink", ctypes.c_void_p)]


def segment(n_bytes: int) -> torch.Tensor:
    """n_bytes of zeros starting on a 2 MB boundary."""
    big = torch.zeros(n_bytes + (2 << 20), dtype=torch.uint8, device="cuda")
    start = (-big.data_ptr()) % (2 << 20)
    return big[start:start + n_bytes]


def two_means(values: np.ndarray) -> float:
    lo, hi = np.percentile(values, 10), np.percentile(values, 90)
    for _ in range(50):
        t = (lo + hi) / 2
        lo, hi = values[values < t].mean(), values[values >= t].mean()
    return float((lo + hi) / 2)


def main(out_path: str) -> None:
    device = torch.device("cuda")
    ensure_context(device)
    major, minor = torch.cuda.get_device_capability()
    image, _ = _Nvrtc().compile({"probe.cu": SOURCE}, "probe.cu", [f"--gpu-architecture=sm_{major}{minor}"],
                                ptx=False)
    kernels = {name: Kernel(image, name) for name in ("latency_map", "ping_pong")}
    for k in kernels.values():
        k.allow_dynamic_shared(SHARED)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    stream = torch.cuda.current_stream().cuda_stream
    result = {"device": torch.cuda.get_device_name(0), "sms": sms}

    # a. latency map over one 2 MB segment
    lines = (2 << 20) // 128
    buf = segment(2 << 20)
    lat = torch.zeros(sms, lines, dtype=torch.int16, device=device)
    smids = torch.zeros(sms, dtype=torch.int32, device=device)
    args = MapArgs(buf.data_ptr(), lines, 16, lat.data_ptr(), smids.data_ptr())
    kernels["latency_map"].launch_cooperative(sms, 32, SHARED, stream, args)
    torch.cuda.synchronize()
    lat = lat.cpu().numpy().astype(np.int32) & 0xFFFF
    smids = smids.cpu().numpy()
    thr = two_means(lat.ravel())
    near = lat < thr
    result["threshold_cycles"] = thr
    result["near_mean"], result["far_mean"] = float(lat[near].mean()), float(lat[~near].mean())
    result["near_fraction_per_block"] = near.mean(axis=1).round(3).tolist()
    print(f"latency: threshold {thr:.0f} cycles, near {lat[near].mean():.0f}, far {lat[~near].mean():.0f}; "
          f"near fraction per block {near.mean(axis=1).min():.2f}..{near.mean(axis=1).max():.2f}")

    # b. group the SMs: block 0's near set, the others agree or disagree with it
    agree = (near == near[0]).mean(axis=1)
    group = (agree < 0.5).astype(int)
    result["agreement_with_block0"] = agree.round(3).tolist()
    result["group_of_block"], result["smid_of_block"] = group.tolist(), smids.tolist()
    home = np.array([near[group == g].mean(axis=0) for g in (0, 1)])   # [group, line]
    line_home = (home[1] > home[0]).astype(int)                        # 0: near group 0
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, line_home, -1]) != 0))
    bits = {str(b): float(np.corrcoef((np.arange(lines) * 128 >> b) & 1, line_home)[0, 1]) for b in range(7, 21)}
    result.update(group_sizes=[int((group == g).sum()) for g in (0, 1)],
                  line_home="".join(map(str, line_home)),
                  clear_lines=float(((home.max(axis=0) > 0.9) & (home.min(axis=0) < 0.1)).mean()),
                  run_lengths=np.bincount(runs).tolist()[:64], address_bit_correlation=bits)
    print(f"groups {result['group_sizes']}; lines with a clear home {result['clear_lines']:.3f}; "
          f"first 128 lines {result['line_home'][:128]}")
    print("run lengths (lines):", {i: c for i, c in enumerate(result["run_lengths"]) if c})
    print("address bit correlation:", {b: round(c, 2) for b, c in bits.items()})

    # c. ping-pong: blocks of each group, lines homed near each
    pairs, rng = [], np.random.default_rng(0)
    g0, g1 = np.flatnonzero(group == 0), np.flatnonzero(group == 1)
    lines_of = [np.flatnonzero((line_home == g) & (home[g] > 0.9) & (home[1 - g] < 0.1)) for g in (0, 1)]
    lines_of = [l[l > 8] for l in lines_of]                              # lines 0..8 hold the stop word
    hbm = torch.empty(4 << 30, dtype=torch.uint8, device=device)
    cycles = torch.zeros(1, dtype=torch.int64, device=device)
    sink = torch.zeros(1, dtype=torch.int64, device=device)
    rows = []
    for load in (0, 1):
        for ga, gb in ((0, 0), (0, 1), (1, 1)):
            for ha, hb in ((0, 0), (0, 1), (1, 0), (1, 1)):
                times = []
                for trial in range(4):
                    a = int(rng.choice(g0 if ga == 0 else g1))
                    b = int(rng.choice([x for x in (g0 if gb == 0 else g1) if x != a]))
                    la, lb = int(rng.choice(lines_of[ha])), int(rng.choice(lines_of[hb]))
                    buf.zero_()
                    args = PingArgs(buf.data_ptr(), a, b, la, lb, 2000, cycles.data_ptr(), hbm.data_ptr(),
                                    hbm.numel() // 16, load, sink.data_ptr())
                    kernels["ping_pong"].launch_cooperative(sms, 256, SHARED, stream, args)
                    torch.cuda.synchronize()
                    times.append(cycles.item() / 2000)
                row = {"load": load, "group_a": ga, "group_b": gb, "home_a_to_b": ha, "home_b_to_a": hb,
                       "round_trip_cycles": [round(t, 1) for t in times]}
                rows.append(row)
                print(f"load {load} | A in {ga}, B in {gb} | A->B line near {ha}, B->A line near {hb} | "
                      f"round trip {np.median(times):.0f} cycles {[round(t) for t in times]}")
    result["ping_pong"] = rows
    result["sm_clock_khz"] = torch.cuda.get_device_properties(0).clock_rate if hasattr(
        torch.cuda.get_device_properties(0), "clock_rate") else None
    json.dump(result, open(out_path, "w"))
    np.savez_compressed(out_path.replace(".json", ".npz"), lat=lat.astype(np.uint16), smids=smids)


if __name__ == "__main__":
    main(sys.argv[1])
