"""The fast prefill's Triton delta rule without a GPU: its kernels run in the
Triton interpreter (float32 on CPU tensors) against ``torch_ops.deltanet``, and
compile for sm_90 within the register file (no spills) and shared memory."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import triton

from megadelta.config import QWEN35_0_8B, QWEN35_GROUPED_VALUE, tiny_config
from megadelta.prefill import torch_ops, triton_ops
from megadelta.prefill.tune_deltanet import describe, random_layer
from helpers import rel_err

# Grouped value heads (2 per key head), Dk != Dv, several value-column blocks per head.
CONFIG = tiny_config(linear_key_head_dim=32, linear_value_head_dim=64)
TOL = 1e-4                       # float32 throughout: only rounding differs (typically ~1e-6)
SMALL_CHUNKS = triton_ops.DeltaNetTuning(chunk=16, wy_block=16, state_block_v=32, output_block_v=16)
SM90_SHARED_LIMIT = 232448       # bytes of shared memory one block may use on sm_90


def interpreted_errors(cases: list[dict]) -> list[dict[str, float]]:
    """Runs ``cases`` (see ``case_errors``) in a fresh Python with
    TRITON_INTERPRET=1: it has to be set before Triton is imported, since
    Triton's own library functions (tl.sum, tl.sigmoid...) are jitted then."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, __file__], input=json.dumps(cases), env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def case_errors(tuning: dict, length: int, seed: int, repeated_keys: bool = False) -> dict[str, float]:
    """Relative errors of ``triton_ops.deltanet`` against ``torch_ops.deltanet``
    on random inputs over a non-empty conv and DeltaNet state. ``repeated_keys``:
    one token repeated with beta ~ 1 and no decay, so every key of a chunk is the
    same, the hardest case for the chunk's triangular inverse."""
    proj, conv_state, state, weights = random_layer(CONFIG, length, "cpu", torch.bfloat16,
                                                    torch.Generator().manual_seed(seed))
    if repeated_keys:
        hv, b_col = CONFIG.linear_num_value_heads, CONFIG.conv_dim + CONFIG.value_dim
        proj[:] = proj[0]
        proj[:, b_col:b_col + hv] = 12.0       # beta = sigmoid(12)
        proj[:, b_col + hv:] = -40.0           # g = -e^A_log softplus(-40 + dt_bias) ~ 0
    conv_ref, state_ref = conv_state.clone(), state.clone()
    expected = torch_ops.deltanet(proj, conv_ref, state_ref, weights, CONFIG)
    got = triton_ops.deltanet(proj, conv_state, state, weights, CONFIG, triton_ops.DeltaNetTuning(**tuning))
    assert got.shape == expected.shape and got.dtype == torch.float32
    return {"out": rel_err(got, expected), "state": rel_err(state, state_ref), "conv": rel_err(conv_state, conv_ref)}


SEED = random.randrange(1 << 30)   # fresh inputs every run
CASES = {
    **{f"T{n}": dict(tuning=asdict(triton_ops.TUNING), length=n, seed=SEED + n)
       for n in (1, 2, 63, 64, 65, 130)},                  # 2: shorter than the conv window
    **{f"chunk16-T{n}": dict(tuning=asdict(SMALL_CHUNKS), length=n, seed=SEED + n)
       for n in (17, 40)},                                 # one diagonal block per chunk
    **{f"short-T{n}": dict(tuning=asdict(triton_ops.SHORT_TUNING), length=n, seed=SEED + n)
       for n in (33, 130)},
    "repeated-keys-T130": dict(tuning=asdict(triton_ops.TUNING), length=130, seed=SEED, repeated_keys=True),
}


@pytest.fixture(scope="module")
def errors() -> dict[str, dict[str, float]]:
    return dict(zip(CASES, interpreted_errors(list(CASES.values()))))


@pytest.mark.parametrize("case", CASES)
def test_interpreted_kernels_match_torch(errors, case):
    assert max(errors[case].values()) < TOL, f"seed {CASES[case]['seed']}: {errors[case]}"


def compile_sm90(kernel: triton.JITFunction, launch: dict):
    """``kernel`` compiled for sm_90 with the launch keywords ``deltanet`` uses; no GPU needed."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    constants = dict(launch)
    options = {name: constants.pop(name) for name in ("num_warps", "num_stages", "enable_fp_fusion")
               if name in constants}
    signature = {name: "constexpr" if name in constants else argument_type(name) for name in kernel.arg_names}
    # as at launch: tensors 16-byte aligned, the projection's row stride a multiple of 16
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
               if name.endswith("_ptr") or name == "proj_stride"}
    return triton.compile(ASTSource(kernel, signature, constexprs=constants, attrs=aligned),
                          target=GPUTarget("cuda", 90, 32), options=options)


def sm90_resources(kernel: triton.JITFunction, launch: dict) -> dict[str, int]:
    """Registers, stack (spills) and shared memory of ``kernel`` compiled for sm_90."""
    compiled = compile_sm90(kernel, launch)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([triton.knobs.nvidia.cuobjdump.path, "--dump-resource-usage", cubin.name],
                               capture_output=True, text=True, check=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    assert found, usage
    return {"registers": int(found[1]), "stack": int(found[2]), "shared": compiled.metadata.shared}


def argument_type(name: str) -> str:
    if name == "proj_ptr":
        return "*bf16"
    if name.endswith("_ptr"):
        return "*fp32"
    return "fp32" if name == "q_scale" else "i32"


@pytest.mark.parametrize("config", [QWEN35_0_8B, QWEN35_GROUPED_VALUE], ids=lambda c: c.name)
def test_kernels_compile_for_sm90_without_spills(config):
    for kernel, launch in [item for tuning in (triton_ops.TUNING, triton_ops.SHORT_TUNING)
                           for item in triton_ops.delta_rule_launches(config, tuning).items()]:
        used = sm90_resources(kernel, launch)
        print(f"{kernel.__name__}: {used}")
        assert used["stack"] == 0, f"{kernel.__name__} spills registers: {used}"
        assert used["shared"] <= SM90_SHARED_LIMIT, f"{kernel.__name__} needs too much shared memory: {used}"


DEFAULT = triton_ops.DeltaNetTuning()
# Around the N = 8 boundary of each kernel's products, and chunks of 32 (no wgmma for M = 32).
WGMMA_TUNINGS = [DEFAULT, replace(DEFAULT, state_warps=8, state_stages=2), replace(DEFAULT, state_warps=8),
                 replace(DEFAULT, state_warps=8, state_block_v=32, state_stages=2),
                 replace(DEFAULT, wy_warps=8, wy_block=16), replace(DEFAULT, wy_warps=8),
                 replace(DEFAULT, output_warps=8, output_block_v=16), replace(DEFAULT, output_warps=8, output_block_v=32),
                 replace(DEFAULT, chunk=32, state_warps=8, output_warps=8, wy_warps=8, wy_block=16, output_block_v=16)]


@pytest.mark.parametrize("tuning", WGMMA_TUNINGS, ids=lambda t: describe(t).replace(" ", ","))
def test_unsafe_products_predict_the_sm90_wgmma_shapes(tuning):
    """``unsafe_products`` models how Triton splits each product into wgmma
    instructions; the N of those in the compiled PTX must be the predicted ones,
    so that exactly the tunings that would issue a tf32 m64n8k8 are rejected."""
    launches = triton_ops.delta_rule_launches(QWEN35_0_8B, tuning, check=False)
    narrowest = 256
    for kernel, launch in launches.items():
        ptx = compile_sm90(kernel, launch).asm["ptx"]
        emitted = {int(n) for n in re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k8\.f32\.tf32", ptx)}
        predicted = {triton_ops.wgmma_n(m, n, launch["num_warps"]) for m, n in triton_ops.tf32_products(kernel, launch)}
        assert emitted == predicted - {None}, f"{kernel.__name__}: emitted {emitted}, predicted {predicted}"
        narrowest = min([narrowest, *emitted])
    rejected = bool(triton_ops.unsafe_products(launches))
    assert rejected == (narrowest < 16)
    if rejected:
        with pytest.raises(ValueError, match="triton-lang/triton#10629"):
            triton_ops.delta_rule_launches(QWEN35_0_8B, tuning)


if __name__ == "__main__":   # the interpreted run: cases on stdin, errors on stdout
    print(json.dumps([case_errors(**case) for case in json.load(sys.stdin)]))
