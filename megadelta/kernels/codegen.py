"""Render ``model_constants.cuh``: every model number the CUDA code uses, from a ModelConfig.

The CUDA sources never spell a model dimension; they include this generated
header. Kernel design constants (threads per block) live in ``common.cuh``.
"""

from __future__ import annotations

import torch

from ..config import ATTENTION, ModelConfig

# Every matrix-vector product loads 16-byte chunks: 32 lanes x 8 bf16 = 256 columns.
COLUMNS_PER_WARP_LOAD = 256
# One warp of the delta-rule stage owns 32 value columns of a head.
DELTANET_COLUMN_TILE = 32
# Compute threads and warps per block, and the block with its producer warpgroup
# (kept in step with common.cuh).
THREADS = 256
WARPS = THREADS // 32
PRODUCER_WARPS = 4
BLOCK_THREADS = THREADS + 32 * PRODUCER_WARPS
# The line the dynamic shared memory starts on (common.cuh: SHARED_LINE).
SHARED_LINE = 128
# The STAGE_CLOCK build's record (common.cuh: STAGE_CLOCK_SLOTS, STAGE_POINT_SLOTS,
# enum StagePoint): per stage (a layer or the output projection) the longest and
# the summed duration over blocks, then per point passed in it (max, sum, kind + 1).
STAGE_CLOCK_SLOTS = 512
STAGE_POINT_SLOTS = 16
STAGE_POINTS = ("done", "loaded", "normed", "product", "awaited", "published")
STAGE_CLOCK_WORDS = 2 * STAGE_CLOCK_SLOTS + 3 * STAGE_POINT_SLOTS * STAGE_CLOCK_SLOTS
# The UNIT_CLOCK build's record after them (common.cuh: UNIT_CLOCK_*): a header,
# 8 words per product unit, 2 per page issued.
UNIT_CLOCK_LAYER, UNIT_CLOCK_LAYERS = 4, 4
UNIT_CLOCK_HEADER, UNIT_CLOCK_UNITS, UNIT_CLOCK_PAGES = 8, 2048, 8192
UNIT_CLOCK_WORDS = UNIT_CLOCK_HEADER + 8 * UNIT_CLOCK_UNITS + 2 * UNIT_CLOCK_PAGES
# The STAGE_CLOCK build's timeline after those (common.cuh: stage_timeline): per
# block and window layer, when it began and (time, kind + 1) per point passed.
TIMELINE_BLOCKS = 256
TIMELINE_RECORD = 1 + 2 * STAGE_POINT_SLOTS
TIMELINE_WORDS = TIMELINE_BLOCKS * UNIT_CLOCK_LAYERS * TIMELINE_RECORD
# Where those records start in the barrier buffer (Params::barrier), after the
# arrival counter, the report address and the output projection's claims
# counter (common.cuh: OUTPUT_CLAIMS_AT, STAGE_CLOCK_AT,
# UNIT_CLOCK_AT, TIMELINE_AT), and the buffer's length.
OUTPUT_CLAIMS_AT = 2
STAGE_CLOCK_AT = OUTPUT_CLAIMS_AT + 1
UNIT_CLOCK_AT = STAGE_CLOCK_AT + STAGE_CLOCK_WORDS
TIMELINE_AT = UNIT_CLOCK_AT + UNIT_CLOCK_WORDS
BARRIER_WORDS = TIMELINE_AT + TIMELINE_WORDS
# What a block reports (in place of the progress count) when a tagged hand-off
# times out (common.cuh: HANDOFF_TIMED_OUT).
HANDOFF_TIMED_OUT = -0x40000000


class UnsupportedShapeError(ValueError):
    """A config whose shapes the megakernel's tiling does not cover."""


def check_supported(c: ModelConfig) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UnsupportedShapeError(f"{c.name}: {msg}")

    for name, k in (("hidden_size", c.hidden_size), ("intermediate_size", c.intermediate_size),
                    ("value_dim", c.value_dim), ("q_size", c.q_size)):
        need(k % COLUMNS_PER_WARP_LOAD == 0,
             f"{name} ({k}) must be a multiple of {COLUMNS_PER_WARP_LOAD} (one 16-byte load per lane)")
    need(c.head_dim % COLUMNS_PER_WARP_LOAD == 0,
         f"head_dim ({c.head_dim}) must be a multiple of {COLUMNS_PER_WARP_LOAD}")
    need(c.linear_value_head_dim % DELTANET_COLUMN_TILE == 0,
         f"linear_value_head_dim ({c.linear_value_head_dim}) must be a multiple of "
         f"{DELTANET_COLUMN_TILE}")
    need(c.linear_key_head_dim % WARPS == 0 and c.linear_key_head_dim % 32 == 0,
         f"linear_key_head_dim ({c.linear_key_head_dim}) must be a multiple of 32 and {WARPS}")
    need(c.linear_value_head_dim % 32 == 0,
         f"linear_value_head_dim ({c.linear_value_head_dim}) must be a multiple of 32")


def inv_frequencies(c: ModelConfig) -> list[float]:
    """RoPE inverse frequencies, computed in float32 exactly as the reference model does."""
    exponents = torch.arange(0, c.rotary_dim, 2, dtype=torch.float32) / c.rotary_dim
    return (1.0 / c.rope_theta ** exponents).tolist()


def _float(x: float) -> str:
    return f"{x!r}f" if "e" in repr(x) or "." in repr(x) else f"{x!r}.0f"


def _int_array(name: str, values) -> str:
    return f"__constant__ int {name}[{len(values)}] = {{{', '.join(str(v) for v in values)}}};"


def render_constants(c: ModelConfig) -> str:
    check_supported(c)
    slots = {i: n for kind in (c.deltanet_layers, c.attention_layers) for n, i in enumerate(kind)}
    is_attention = [int(t == ATTENTION) for t in c.layer_types]
    proj_rows_deltanet = c.conv_dim + c.value_dim + 2 * c.linear_num_value_heads
    proj_rows_attention = 2 * c.q_size + 2 * c.kv_size
    defines = {
        "VOCAB": c.vocab_size,
        "HIDDEN": c.hidden_size,
        "INTERMEDIATE": c.intermediate_size,
        "N_LAYERS": c.num_hidden_layers,
        "N_HEADS": c.num_attention_heads,
        "N_KV_HEADS": c.num_key_value_heads,
        "HEAD_DIM": c.head_dim,
        "ROTARY_DIM": c.rotary_dim,
        "Q_SIZE": c.q_size,
        "KV_SIZE": c.kv_size,
        "QUERIES_PER_KV": c.queries_per_kv_head,
        "DN_KEY_HEADS": c.linear_num_key_heads,
        "DN_VALUE_HEADS": c.linear_num_value_heads,
        "DN_KEY_DIM": c.linear_key_head_dim,
        "DN_VALUE_DIM": c.linear_value_head_dim,
        "DN_V_PER_K": c.value_heads_per_key_head,
        "KEY_DIM": c.key_dim,
        "VALUE_DIM": c.value_dim,
        "CONV_DIM": c.conv_dim,
        "CONV_KERNEL": c.linear_conv_kernel_dim,
        "DN_PROJ_ROWS": proj_rows_deltanet,
        "ATTN_PROJ_ROWS": proj_rows_attention,
        "PROJ_ROWS_MAX": max(proj_rows_deltanet, proj_rows_attention),
        "VEC_MAX": max(c.hidden_size, c.value_dim, c.q_size, c.intermediate_size),
    }
    lines = [
        f"// Generated by megadelta/kernels/codegen.py for {c.name}; do not edit.",
        "#pragma once",
        *(f"#define {k} {v}" for k, v in defines.items()),
        f"#define RMS_EPS {_float(c.rms_norm_eps)}",
        _int_array("LAYER_IS_ATTENTION", is_attention),
        _int_array("LAYER_SLOT", [slots[i] for i in range(c.num_hidden_layers)]),
        # In global memory, not __constant__: each lane reads a different entry,
        # which the constant cache would serve one address at a time.
        f"__device__ const float ROPE_INV_FREQ[{c.rotary_dim // 2}] = "
        f"{{{', '.join(_float(f) for f in inv_frequencies(c))}}};",
        "",
    ]
    return "\n".join(lines)
