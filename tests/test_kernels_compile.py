"""The megakernel compiles, with no GPU, for every target architecture and
config, through nvcc and through NVRTC; ptxas must report no register spills
and no stack frame (a spill or a local array in the fused kernel costs local-
memory traffic on every step)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from megadelta.config import QWEN35_0_8B, QWEN35_2B, QWEN35_GROUPED_VALUE
from megadelta.kernels.build import KERNEL_NAME, MAIN_SOURCE, CompileError, compile_megakernel, sources
from megadelta.kernels.sass_loops import build_apart

ARCHS = ["sm_90a", "sm_80", "sm_86", "sm_89"]
REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = [QWEN35_0_8B, QWEN35_2B, QWEN35_GROUPED_VALUE]


def resource_report(log: str) -> dict[str, int]:
    """Stack frame, spills and registers of the megakernel from ptxas -v output."""
    section = log[log.index(f"Compiling entry function '{KERNEL_NAME}'"):]
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", section)
    regs = re.search(r"Used (\d+) registers", section)
    assert frame and regs, f"no resource report in:\n{log}"
    return {"stack": int(frame[1]), "spill_stores": int(frame[2]), "spill_loads": int(frame[3]),
            "registers": int(regs[1])}


def check_resources(report: dict[str, int], where: str) -> None:
    assert report["spill_stores"] == 0 and report["spill_loads"] == 0, f"{where}: register spills {report}"
    assert report["stack"] == 0, f"{where}: nonzero stack frame {report}"


def gencode(arch: str) -> str:
    return f"arch=compute_{arch[3:]},code={arch}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_compiles_without_spills(tmp_path, config, arch):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed (the NVRTC test covers the build users get)")
    for name, text in sources(config).items():
        (tmp_path / name).write_text(text)
    run = subprocess.run([nvcc, "-cubin", f"-gencode={gencode(arch)}", "-std=c++17", "-Xptxas", "-v",
                          "-o", str(tmp_path / "k.cubin"), str(tmp_path / MAIN_SOURCE)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    check_resources(resource_report(run.stderr), f"nvcc {arch} {config.name}")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles_without_spills(config, arch):
    try:
        build = compile_megakernel(config, arch, use_cache=False, extra_options=("--ptxas-options=-v",))
    except CompileError as e:
        if "libnvrtc not found" in str(e):
            pytest.skip(str(e))
        raise
    assert build.image[:4] == b"\x7fELF"
    check_resources(resource_report(build.log), f"NVRTC {arch} {config.name}")


def build_with(nvrtc: str, config, arch: str, out: Path, options: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """This checkout's megakernel built in a process of its own with
    $MEGADELTA_NVRTC = nvrtc (build.py: one NVRTC a process): the image and NVRTC's log."""
    image = out / f"{config.name}-{arch}.image"
    log = build_apart(REPOSITORY, config.name, arch, options, image, {"MEGADELTA_NVRTC": nvrtc})
    return image.read_bytes(), log


@pytest.mark.skipif(not os.environ.get("MEGADELTA_TEST_NVRTC"),
                    reason="$MEGADELTA_TEST_NVRTC names no second NVRTC (.ci/run sets the GPU machine's)")
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_gpu_machine_nvrtc_compiles_without_spills(tmp_path, config, arch):
    """The same check with the NVRTC the lent GPU machine builds with (.ci/run:
    13.0.88, torch 2.11+cu130's): another version compiles the kernel to other
    machine code, so the wheel's NVRTC alone does not vouch for it."""
    image, log = build_with(os.environ["MEGADELTA_TEST_NVRTC"], config, arch, tmp_path, ("--ptxas-options=-v",))
    assert image[:4] == b"\x7fELF"
    check_resources(resource_report(log), f"$MEGADELTA_TEST_NVRTC {arch} {config.name}")


def test_virtual_architecture_builds_ptx():
    """What the GPU tests load to run the pre-Hopper path on a Hopper GPU."""
    try:
        build = compile_megakernel(QWEN35_0_8B, "compute_80", use_cache=False)
    except CompileError as e:
        if "libnvrtc not found" in str(e):
            pytest.skip(str(e))
        raise
    text = build.image.rstrip(b"\0").decode()
    assert ".target sm_80" in text and ".entry megadelta_decode" in text
    assert "cp.async.bulk" not in text and "setmaxnreg" not in text   # the Hopper path is not in it


def test_compile_error_shows_the_log(monkeypatch):
    import megadelta.kernels.build as build

    def broken(config):
        files = sources(config)
        files[MAIN_SOURCE] += "\nthis is not C++;\n"
        return files

    monkeypatch.setattr(build, "sources", broken)
    with pytest.raises(CompileError, match="this|error"):
        build.compile_megakernel(QWEN35_0_8B, "sm_90a", use_cache=False)


def test_chosen_nvrtc_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("MEGADELTA_NVRTC", str(tmp_path / "libnvrtc.so.13"))
    with pytest.raises(CompileError, match="MEGADELTA_NVRTC names no file"):
        compile_megakernel(QWEN35_0_8B, "sm_90a", use_cache=False)


def installed_nvrtc_in(directory: Path) -> Path:
    """Links to the installed libnvrtc and its builtins, in `directory`."""
    from cuda.pathfinder import load_nvidia_dynamic_lib

    wheel = Path(load_nvidia_dynamic_lib("nvrtc").abs_path)
    for lib in [wheel, *wheel.parent.glob("libnvrtc-builtins.so.*")]:
        (directory / lib.name).symlink_to(lib)
    return directory / wheel.name


@pytest.mark.skipif(bool(os.environ.get("MEGADELTA_NVRTC")), reason="compares with the installed NVRTC, "
                    "which this process does not use: $MEGADELTA_NVRTC is set")
def test_chosen_nvrtc_builds_the_same_cubin(tmp_path):
    """$MEGADELTA_NVRTC loads that file and the builtins beside it."""
    expected = compile_megakernel(QWEN35_0_8B, "sm_90a", use_cache=False).image
    image, _ = build_with(str(installed_nvrtc_in(tmp_path)), QWEN35_0_8B, "sm_90a", tmp_path)
    assert image == expected


def test_one_nvrtc_a_process(tmp_path, monkeypatch):
    compile_megakernel(QWEN35_0_8B, "sm_90a", use_cache=False)
    monkeypatch.setenv("MEGADELTA_NVRTC", str(installed_nvrtc_in(tmp_path)))
    with pytest.raises(CompileError, match="one NVRTC a process"):
        compile_megakernel(QWEN35_0_8B, "sm_90a", use_cache=False)


def test_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MEGADELTA_CACHE", str(tmp_path))
    first = compile_megakernel(QWEN35_0_8B, "sm_90a")
    cached = list((tmp_path / "kernels").glob("*.cubin"))
    assert len(cached) == 1
    again = compile_megakernel(QWEN35_0_8B, "sm_90a")
    assert again.image == first.image and again.log == ""


def test_all_nan_logits_give_token_zero_on_cpu_emulation(tmp_path, monkeypatch):
    """A checkpoint that makes every logit NaN: the greedy argmax picks token 0,
    as torch.argmax does, and the next step reads a real embedding row (it
    used to pick an index past the vocabulary and read out of bounds)."""
    import torch

    from megadelta.checkpoint import random_weights
    from megadelta.kernels.emulate import EmulatedKernel, EmulatorUnavailable
    from megadelta.state import SequenceState

    monkeypatch.setenv("MEGADELTA_CACHE", str(tmp_path))
    config = emulation_config(value_heads=4)
    weights = random_weights(config, seed=int(torch.randint(1 << 30, ())))
    weights["norm.weight"] = torch.full_like(weights["norm.weight"], float("nan"))
    try:
        kernel = EmulatedKernel(config, weights, grid=2, ring_bytes=48 * 1024)
    except EmulatorUnavailable as e:
        pytest.skip(str(e))
    state = SequenceState.empty(config, 8, torch.bfloat16)
    assert torch.isnan(kernel.decode(5, state)).all()
    assert kernel.decode_greedy(5, state, 2) == [int(torch.full((3,), float("nan")).argmax())] * 2


def test_emulated_build_takes_the_kernel_macros(tmp_path, monkeypatch):
    """Macros reach g++ and key the cached library; anything else is refused."""
    from megadelta.kernels import emulate

    monkeypatch.setenv("MEGADELTA_CACHE", str(tmp_path))
    monkeypatch.setattr(emulate.shutil, "which", lambda name: "/usr/bin/" + name)
    commands = []

    def fake_gxx(command, **kwargs):
        commands.append(command)
        Path(command[command.index("-o") + 1]).write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(emulate.subprocess, "run", fake_gxx)
    config = emulation_config(value_heads=4)
    default = emulate.build_emulator(config)
    option = emulate.build_emulator(config, ("-DPAGES_IN_FLIGHT=2",))
    assert default != option and len(commands) == 2
    assert "-DPAGES_IN_FLIGHT=2" in commands[1] and "-DPAGES_IN_FLIGHT=2" not in commands[0]
    assert emulate.build_emulator(config, ("-DPAGES_IN_FLIGHT=2",)) == option and len(commands) == 2
    with pytest.raises(ValueError, match="only macros"):
        emulate.build_emulator(config, ("-Xptxas=-v",))


def c_struct_fields(source: str, struct: str) -> list[tuple[str, str]]:
    """(type, name) of each field of ``struct`` in a CUDA header."""
    body = source[source.index(f"struct {struct} {{"):]
    body = body[:body.index("};")]
    fields = re.findall(r"^\s+((?:const |volatile )?\w+\*?)\s+(\w+);", body, flags=re.M)
    return [(t.replace("const ", "").replace("volatile ", ""), n) for t, n in fields]


def test_host_mirrors_the_kernel_argument():
    """megakernel.Params and LAYER_FIELDS must match params.cuh field for field."""
    import ctypes

    from megadelta.megakernel import LAYER_FIELDS, Params

    header = sources(QWEN35_0_8B)["params.cuh"]
    c_params = c_struct_fields(header, "Params")
    assert [n for _, n in c_params] == [n for n, _ in Params._fields_]
    for (c_type, name), (_, py_type) in zip(c_params, Params._fields_):
        assert (py_type is ctypes.c_uint64) == c_type.endswith("*"), name
        assert c_type.endswith("*") or (c_type, py_type) in (("int", ctypes.c_int32), ("unsigned", ctypes.c_uint32)), name
    assert [n for _, n in c_struct_fields(header, "LayerWeights")] == list(LAYER_FIELDS)
    assert all(t.endswith("*") for t, _ in c_struct_fields(header, "LayerWeights"))


class LayoutMacros(dict):
    """Names in a #define's value, evaluated from their own #defines."""
    def __init__(self, expressions: dict[str, str]):
        super().__init__()
        self.expressions = expressions

    def __missing__(self, name: str) -> int:
        return eval(self.expressions[name], {}, self)


def test_host_mirrors_the_kernel_constants():
    """The numbers codegen.py keeps in step with common.cuh (block shape, the
    timing builds' record layout, the hand-off timeout's report) agree."""
    from megadelta.kernels import codegen

    header = sources(QWEN35_0_8B)["common.cuh"]
    defines = dict(re.findall(r"^#define (\w+) (\(?-?\w+\)?)", header, re.MULTILINE))
    for name in ("THREADS", "PRODUCER_WARPS", "STAGE_CLOCK_SLOTS", "STAGE_POINT_SLOTS", "UNIT_CLOCK_LAYER",
                 "UNIT_CLOCK_LAYERS", "UNIT_CLOCK_HEADER", "UNIT_CLOCK_UNITS", "UNIT_CLOCK_PAGES",
                 "TIMELINE_BLOCKS", "HANDOFF_TIMED_OUT", "SHARED_LINE"):
        assert int(defines[name].strip("()"), 0) == getattr(codegen, name), name
    # Where the timing builds' records sit in Params::barrier, as the kernel computes them.
    expressions = dict(re.findall(r"^#define (\w+) (.+)$", header, re.MULTILINE))
    for name in ("OUTPUT_CLAIMS_AT", "STAGE_CLOCK_AT", "STAGE_CLOCK_WORDS", "UNIT_CLOCK_AT", "UNIT_CLOCK_WORDS", "TIMELINE_RECORD",
                 "TIMELINE_AT"):
        assert eval(expressions[name], {}, LayoutMacros(expressions)) == getattr(codegen, name), name
    points = re.search(r"enum StagePoint \{(.*?)STAGE_POINTS", header, re.DOTALL)[1]
    assert tuple(n[len("POINT_"):].lower() for n in re.findall(r"POINT_\w+", points)) == codegen.STAGE_POINTS


def test_weights_are_packed_as_the_kernel_reads_them():
    import torch

    from megadelta.checkpoint import random_weights
    from megadelta.config import tiny_config
    from megadelta.megakernel import pack_weights

    config = tiny_config(vocab_size=512)
    weights = random_weights(config, seed=3)
    globals_, layers = pack_weights(config, weights, torch.device("cpu"))
    dn, att = config.deltanet_layers[0], config.attention_layers[0]
    gate, up = weights[f"layers.{dn}.mlp.gate_proj.weight"], weights[f"layers.{dn}.mlp.up_proj.weight"]
    assert torch.equal(layers[dn]["w_gate_up"][0::2], gate) and torch.equal(layers[dn]["w_gate_up"][1::2], up)
    assert torch.equal(layers[dn]["w_down"], weights[f"layers.{dn}.mlp.down_proj.weight"])
    p = f"layers.{dn}.linear_attn."
    assert torch.equal(layers[dn]["w_in"], torch.cat([weights[p + n] for n in (
        "in_proj_qkv.weight", "in_proj_z.weight", "in_proj_b.weight", "in_proj_a.weight")]))
    assert torch.equal(layers[dn]["out_norm"], weights[p + "norm.weight"])   # w, not 1 + w
    assert torch.allclose(layers[att]["q_norm"], 1 + weights[f"layers.{att}.self_attn.q_norm.weight"])
    assert torch.allclose(globals_["final_norm"], 1 + weights["norm.weight"])
    assert layers[dn]["conv_w"].shape == (config.conv_dim, config.linear_conv_kernel_dim)


def test_stop_ids_are_copied_to_the_device_only_when_they_change():
    """decode_greedy sets the stop ids before every launch; an unchanged set
    keeps its device copy (no host round trip), a new one reaches the kernel."""
    import torch

    from megadelta.checkpoint import random_weights
    from megadelta.config import tiny_config
    from megadelta.megakernel import KernelBuffers
    from megadelta.state import SequenceState

    config = tiny_config(vocab_size=512)
    buffers = KernelBuffers(config, random_weights(config, seed=4), torch.device("cpu"), grid=2)
    state = SequenceState.empty(config, 8, torch.bfloat16, torch.device("cpu"))

    def launch_stop_ids() -> list[int]:
        p = buffers.params(state, 1, 1, barrier=0, progress=0, tokens_out=0, logits=False, shared_bytes=0)
        return buffers.stop_ids.tolist()[:p.n_stop] if p.stop_ids else []

    buffers.set_stop_ids({301, 7})
    first = buffers.stop_ids
    assert launch_stop_ids() == [7, 301]
    buffers.set_stop_ids({7, 301})
    assert buffers.stop_ids is first
    buffers.set_stop_ids({9})
    assert buffers.stop_ids is not first and launch_stop_ids() == [9]
    buffers.set_stop_ids(set())
    assert launch_stop_ids() == []


def test_grid_is_the_resident_blocks_down_to_a_multiple_of_eight():
    """The launch never asks for more blocks than fit at once (a grid barrier
    with a block not resident would never open), and leaves at most 7 idle."""
    from megadelta.megakernel import GRID_MULTIPLE, grid_blocks

    assert grid_blocks(132) == 128 and grid_blocks(108) == 104 and grid_blocks(128) == 128
    for resident in range(1, 300):
        grid = grid_blocks(resident)
        assert 1 <= grid <= resident
        assert grid == resident if resident < GRID_MULTIPLE else (grid % GRID_MULTIPLE == 0
                                                                   and resident - grid < GRID_MULTIPLE)


def test_placement_candidates_are_zeroed_lines_across_8k_boundaries_of_their_own_segments():
    """The hand-off vectors' candidate placements (MegakernelBackend._place_vector):
    zeroed (tag 0, which no layer has), whole 128-byte lines, each in a segment
    of its own, at a different offset in it, none past its end, with the
    vector's middle on an 8 KB boundary of the address."""
    import torch

    from megadelta.megakernel import PLACEMENT_BOUNDARY_BYTES, PLACEMENT_SEGMENT_BYTES, placed_copy

    vector = torch.randint(1, 1 << 40, (1024,), dtype=torch.int64)
    candidates = [placed_copy(vector, k, 6) for k in range(6)]
    offsets = set()
    for c in candidates:
        assert c.shape == vector.shape and c.dtype == vector.dtype and c.is_contiguous()
        assert not c.any()
        offset = c.storage_offset() * c.element_size()
        assert offset % 128 == 0 and offset + c.nbytes <= PLACEMENT_SEGMENT_BYTES
        assert c.untyped_storage().nbytes() == PLACEMENT_SEGMENT_BYTES
        middle = c.data_ptr() + c.nbytes // 2
        assert min(middle % PLACEMENT_BOUNDARY_BYTES, -middle % PLACEMENT_BOUNDARY_BYTES) < 128
        offsets.add(offset)
    assert len(offsets) == len(candidates)
    assert len({c.untyped_storage().data_ptr() for c in candidates}) == len(candidates)


def emulation_config(value_heads: int):
    """Real head shapes, 4 layers, small widths: the emulator runs a step in seconds."""
    from megadelta.config import ATTENTION, DELTANET, tiny_config

    return tiny_config(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                       layer_types=(DELTANET, DELTANET, DELTANET, ATTENTION), num_attention_heads=2,
                       num_key_value_heads=1, head_dim=256, linear_num_key_heads=2,
                       linear_num_value_heads=value_heads, linear_key_head_dim=128, linear_value_head_dim=128,
                       name=f"emulated-v{value_heads}")


@pytest.mark.parametrize("ring_kib", [16, 48, 2048], ids=lambda k: f"ring-{k}KiB")
def test_kernel_logic_matches_reference_on_cpu_emulation(tmp_path, monkeypatch, ring_kib):
    """The CUDA sources, run on CPU threads (grid of 2, grouped value heads, a
    40-token context split over both blocks), against the float32 reference: one
    step's logits and state, then a greedy launch of 2 steps. The weight ring
    has 2 pages of 8 KiB (one copy in flight, the producer a page ahead), 6,
    or the most the kernel uses (the producer runs stages ahead).
    $MEGADELTA_EMULATION_OPTIONS (macros, e.g. "-DPAGES_IN_FLIGHT=2") checks an
    option's code path instead of the default build."""
    import torch

    from megadelta.checkpoint import random_weights
    from megadelta.kernels.emulate import EmulatedKernel, EmulatorUnavailable
    from megadelta.model import Qwen35Model
    from megadelta.state import SequenceState

    monkeypatch.setenv("MEGADELTA_CACHE", str(tmp_path))
    config = emulation_config(value_heads=4)
    weights = random_weights(config, seed=int(torch.randint(1 << 30, ())))
    try:
        kernel = EmulatedKernel(config, weights, grid=2, ring_bytes=ring_kib * 1024,
                                kernel_options=tuple(os.environ.get("MEGADELTA_EMULATION_OPTIONS", "").split()))
    except EmulatorUnavailable as e:
        pytest.skip(str(e))
    ref = Qwen35Model(config, weights, dtype=torch.float32)

    def state_from(rs):
        ks = SequenceState.empty(config, rs.max_seq_len, torch.bfloat16)
        ks.copy_from(rs)
        return ks

    rs = ref.new_state(48)
    token = int(ref.prefill([(i * 37) % config.vocab_size for i in range(40)], rs).argmax())
    start = rs.clone()
    ks = state_from(rs)
    got, want = kernel.decode(token, ks), ref.decode(token, rs)
    assert float((got - want).norm() / want.norm()) < 2e-3
    for name in SequenceState.TENSORS:
        a, b = getattr(ks, name)[..., :rs.position, :] if "cache" in name else getattr(ks, name), \
            getattr(rs, name)[..., :rs.position, :] if "cache" in name else getattr(rs, name)
        assert float((a.float() - b).norm() / b.norm()) < 1e-2, name

    greedy_state = state_from(start)
    tokens = kernel.decode_greedy(token, greedy_state, 2)
    assert len(tokens) == 2 and tokens[0] == int(got.argmax())
    assert greedy_state.position == start.position + 2


def test_unit_clock_record_is_summarized_per_layer_and_product():
    """timing --units reads the UNIT_CLOCK build's record (common.cuh): each unit
    goes to the window layer it began in and to its product by the matrix's shape."""
    from megadelta.kernels.codegen import UNIT_CLOCK_HEADER, UNIT_CLOCK_UNITS, UNIT_CLOCK_WORDS
    from megadelta.kernels.timing import summarize_units

    config = QWEN35_0_8B
    words = [0] * UNIT_CLOCK_WORDS
    words[2:7] = [1000, 2000, 3000, 4000, 5000]   # layers 4..7 start, then the window ends
    dn_in_rows = config.conv_dim + config.value_dim + 2 * config.linear_num_value_heads
    dn_in, o_proj = (dn_in_rows, config.hidden_size), (config.hidden_size, config.q_size)
    units = [(dn_in, 7, 1100, 1150, 1400, 1410, 1500),        # layer 4 (DeltaNet)
             (dn_in, 8, 1120, 1200, 1500, 1510, 1650),
             (o_proj, 30, 4100, 4130, 4300, 4310, 4350)]   # layer 7 (attention)
    words[0] = len(units)
    for i, ((rows, columns), page, *t) in enumerate(units):
        words[UNIT_CLOCK_HEADER + 8 * i: UNIT_CLOCK_HEADER + 8 * i + 8] = [rows | columns << 32, page | (i << 32),
                                                                           0, *t]
    pages = UNIT_CLOCK_HEADER + 8 * UNIT_CLOCK_UNITS
    words[pages + 2 * 7: pages + 2 * 7 + 2] = [7, 900]
    words[pages + 2 * 8: pages + 2 * 8 + 2] = [8, 1000]
    summary = summarize_units(config, words)
    assert summary["layer_clocks"] == [1000] * 4
    first, second = summary["products"]
    assert (first["layer"], first["product"], first["units"]) == (4, "deltanet.in_proj", 2)
    assert first["acquire"] == [65, 80] and first["sums"] == [275, 300] and first["epilogue"] == [115, 140]
    assert (first["first_top"], first["last_done"], first["issued_before_had_min"]) == (100, 650, 200)
    assert (second["layer"], second["product"], second["units"]) == (7, "attention.o_proj", 1)
    assert second["issued_before_had_min"] == -1   # page 30's issue was not recorded


def test_stage_clock_timeline_is_read_per_block_from_the_first_start():
    """timing --stages reads each block's timeline (common.cuh: stage_timeline):
    global times in us from the earliest start of the window, points by kind."""
    from megadelta.kernels.codegen import TIMELINE_RECORD, UNIT_CLOCK_LAYERS, UNIT_CLOCK_LAYER
    from megadelta.kernels.timing import summarize_timeline

    words = [0] * (2 * UNIT_CLOCK_LAYERS * TIMELINE_RECORD)
    for block, start in enumerate((5_000, 3_000)):
        for k in range(UNIT_CLOCK_LAYERS):
            at = (block * UNIT_CLOCK_LAYERS + k) * TIMELINE_RECORD
            words[at:at + 5] = [start + 10_000 * k, start + 10_000 * k + 1_500, 2, start + 10_000 * k + 4_000, 4]
    timeline = summarize_timeline(words, 2)
    assert timeline["layers"] == list(range(UNIT_CLOCK_LAYER, UNIT_CLOCK_LAYER + UNIT_CLOCK_LAYERS))
    assert timeline["blocks"][1][0] == [0.0, [["loaded", 1.5], ["product", 4.0]]]
    assert timeline["blocks"][0][2] == [22.0, [["loaded", 23.5], ["product", 26.0]]]
