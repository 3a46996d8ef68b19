"""Checkpoints: the table of tensor names and shapes, loading safetensors with
clear errors, writing (random) checkpoints, and the embedded default.

Tensors are named as in a ``Qwen3_5ForCausalLM`` state dict without the
``model.`` prefix (``embed_tokens.weight``, ``layers.0.linear_attn.A_log``...).
On disk a published checkpoint keeps them under ``model.language_model.``
(``Qwen3_5ForConditionalGeneration``) and one saved from ``Qwen3_5ForCausalLM``
under ``model.``; the loader reads both, single file or sharded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .config import DELTANET, QWEN35_0_8B, ConfigError, ModelConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Longest first: "model.language_model.x" also starts with "model.".
TEXT_PREFIXES = ("model.language_model.", "model.")
# Parts of a published checkpoint that text generation does not use: the vision
# tower, the multi-token-prediction head, and the output projection that ties
# to the embedding.
SKIPPED_PREFIXES = ("model.visual.", "mtp.")
SKIPPED_NAMES = ("lm_head.weight",)
FLOAT_DTYPES = ("BF16", "F16", "F32")
LAYOUT_PREFIX = {"causal_lm": "model.", "conditional_generation": "model.language_model."}


class CheckpointError(ValueError):
    """A checkpoint that megadelta cannot load; the message names the file and tensor."""


# ---- the table of names and shapes --------------------------------------

def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the text model, in layer order, with its shape."""
    h = config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {"embed_tokens.weight": (config.vocab_size, h)}
    for i, layer_type in enumerate(config.layer_types):
        p = f"layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        if layer_type == DELTANET:
            shapes.update(_deltanet_shapes(p + "linear_attn.", config))
        else:
            shapes.update(_attention_shapes(p + "self_attn.", config))
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "mlp.gate_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.up_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.down_proj.weight"] = (h, config.intermediate_size)
    shapes["norm.weight"] = (h,)
    return shapes


def _deltanet_shapes(p: str, c: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, heads = c.hidden_size, c.linear_num_value_heads
    return {
        p + "in_proj_qkv.weight": (c.conv_dim, h),
        p + "in_proj_z.weight": (c.value_dim, h),
        p + "in_proj_b.weight": (heads, h),
        p + "in_proj_a.weight": (heads, h),
        p + "conv1d.weight": (c.conv_dim, 1, c.linear_conv_kernel_dim),
        p + "A_log": (heads,),
        p + "dt_bias": (heads,),
        p + "norm.weight": (c.linear_value_head_dim,),
        p + "out_proj.weight": (h, c.value_dim),
    }


def _attention_shapes(p: str, c: ModelConfig) -> dict[str, tuple[int, ...]]:
    h = c.hidden_size
    return {
        # per head: head_dim query rows, then head_dim output-gate rows
        p + "q_proj.weight": (2 * c.q_size, h),
        p + "k_proj.weight": (c.kv_size, h),
        p + "v_proj.weight": (c.kv_size, h),
        p + "q_norm.weight": (c.head_dim,),
        p + "k_norm.weight": (c.head_dim,),
        p + "o_proj.weight": (h, c.q_size),
    }


def is_float32_vector(name: str) -> bool:
    """A_log, dt_bias and every norm weight: small and precision-sensitive, so
    they are stored and kept in float32 whatever the matrices' dtype."""
    return name.endswith(("A_log", "dt_bias", "norm.weight"))


def is_zero_centred_norm(name: str) -> bool:
    """Norms computing ``x_hat * (1 + w)``; the DeltaNet output norm computes ``x_hat * w``."""
    return name.endswith("norm.weight") and not name.endswith("linear_attn.norm.weight")


# ---- loading ------------------------------------------------------------

def load_config(model_dir: str | Path) -> ModelConfig:
    """The ModelConfig of a Hugging Face model directory (flat or nested config.json)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: no config.json (expected a Hugging Face model directory)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    quantization = data.get("quantization_config") or data.get("text_config", {}).get("quantization_config")
    if quantization:
        raise CheckpointError(f"{path}: quantized checkpoints ({quantization.get('quant_method', '?')}) "
                              f"are not supported; use the bf16 release")
    try:
        return ModelConfig.from_hf_dict(data, name=Path(model_dir).resolve().name)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_weights(model_dir: str | Path, config: ModelConfig, dtype: torch.dtype = torch.bfloat16,
                 device: torch.device | str = "cpu", progress: bool = False) -> dict[str, torch.Tensor]:
    """Every text-model tensor of the checkpoint in ``model_dir``, checked against
    ``expected_shapes(config)``. Matrices come back in ``dtype``, the float32
    vectors in float32. On the CPU, tensors already in the wanted dtype stay
    memory-mapped (copy-on-write) instead of being read into memory."""
    model_dir = Path(model_dir)
    expected = expected_shapes(config)
    by_file = _locate_text_tensors(model_dir, expected)
    weights: dict[str, torch.Tensor] = {}
    with tqdm(total=len(expected), desc=f"loading {model_dir.name}", unit="tensor",
              disable=not progress) as bar:
        for path, entries in by_file.items():
            with _open_safetensors(path) as f:
                for name, key in entries:
                    weights[name] = _read_tensor(f, path, key, expected[name], dtype, device,
                                                 keep_float32=is_float32_vector(name))
                    bar.update()
    return {name: weights[name] for name in expected}


def _locate_text_tensors(model_dir: Path, expected: dict[str, tuple[int, ...]]
                         ) -> dict[Path, list[tuple[str, str]]]:
    """Map each expected tensor to (file, key in file), grouped by file; raise on
    tensors that are missing, duplicated or unknown."""
    found: dict[str, tuple[Path, str]] = {}
    for key, path in _checkpoint_keys(model_dir).items():
        if key.startswith(SKIPPED_PREFIXES) or key in SKIPPED_NAMES:
            continue
        name = _strip_text_prefix(key)
        if name not in expected:
            raise CheckpointError(
                f"{path}: unexpected tensor {key!r}: not part of a text model with this config "
                f"(expected names like 'model.language_model.{next(iter(expected))}' or "
                f"'model.{next(iter(expected))}')")
        if name in found:
            other_path, other_key = found[name]
            raise CheckpointError(f"{path}: tensor {name!r} appears twice: as {key!r} here and as "
                                  f"{other_key!r} in {other_path}")
        found[name] = (path, key)
    missing = [name for name in expected if name not in found]
    if missing:
        prefix = _prefix_in_use(found) if found else "model."
        detail = ", ".join(f"{prefix}{n} {list(expected[n])}" for n in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{_weights_file_or_index(model_dir)}: missing tensor {detail}{more}")
    by_file: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for name, (path, key) in found.items():
        by_file[path].append((name, key))
    return by_file


def _strip_text_prefix(key: str) -> str | None:
    for prefix in TEXT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def _prefix_in_use(found: dict[str, tuple[Path, str]]) -> str:
    """The text prefix of the checkpoint's keys, to name missing tensors as they would appear."""
    _, key = next(iter(found.values()))
    return next(p for p in TEXT_PREFIXES if key.startswith(p))


def _weights_file_or_index(model_dir: Path) -> Path:
    index = model_dir / INDEX_FILE
    return index if index.is_file() else model_dir / SINGLE_FILE


def _checkpoint_keys(model_dir: Path) -> dict[str, Path]:
    """Every tensor key in the checkpoint and the file holding it."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        return _index_keys(index)
    single = model_dir / SINGLE_FILE
    if single.is_file():
        with _open_safetensors(single) as f:
            return {key: single for key in f.keys()}
    raise CheckpointError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}")


def _index_keys(index: Path) -> dict[str, Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index (no valid 'weight_map': {e})") from None
    keys = {key: index.parent / shard for key, shard in weight_map.items()}
    for shard in sorted(set(keys.values())):
        if not shard.is_file():
            held = [k for k, s in keys.items() if s == shard]
            raise CheckpointError(f"{index}: shard {shard.name} is missing; it should hold "
                                  f"{len(held)} tensors, e.g. {held[0]!r}")
    return keys


class _open_safetensors:
    """``safe_open`` whose errors name the file and, for a truncated file, the
    first tensor whose data is cut off."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.handle = safe_open(self.path, framework="pt", device="cpu")
            return self.handle.__enter__()
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{self.path}: {_diagnose_safetensors(self.path, e)}") from None

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


def _diagnose_safetensors(path: Path, error: Exception) -> str:
    """Say what is wrong with a safetensors file safetensors refused to open."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return f"corrupt safetensors file: only {size} bytes, too short for a header"
        header_len = int.from_bytes(raw, "little")
        if 8 + header_len > size:
            return (f"corrupt safetensors header: it claims {header_len} bytes but the file has "
                    f"{size} bytes ({error})")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return f"corrupt safetensors header: not valid JSON ({e})"
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    for key, info in sorted(tensors.items(), key=lambda kv: kv[1].get("data_offsets", [0, 0])[1]):
        end = 8 + header_len + info.get("data_offsets", [0, 0])[1]
        if end > size:
            return (f"file is truncated: tensor {key!r} needs bytes up to {end} but the file has "
                    f"{size} (an interrupted download or copy?)")
    return f"corrupt safetensors file ({error})"


def _read_tensor(f, path: Path, key: str, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device | str, keep_float32: bool) -> torch.Tensor:
    try:
        view = f.get_slice(key)
    except SafetensorError:
        raise CheckpointError(f"{path}: has no tensor {key!r}, though {INDEX_FILE} places it "
                              f"there") from None
    found = tuple(view.get_shape())
    if found != shape:
        raise CheckpointError(f"{path}: tensor {key!r} has shape {list(found)}, "
                              f"expected {list(shape)}")
    stored = view.get_dtype()
    if stored not in FLOAT_DTYPES:
        raise CheckpointError(f"{path}: tensor {key!r} is stored as {stored}; megadelta loads "
                              f"{'/'.join(FLOAT_DTYPES)} (quantized checkpoints are not supported)")
    return f.get_tensor(key).to(device=device, dtype=torch.float32 if keep_float32 else dtype)


# ---- writing ------------------------------------------------------------

def write_checkpoint(out_dir: str | Path, config: ModelConfig, weights: dict[str, torch.Tensor], *,
                     layout: str = "causal_lm", max_shard_bytes: int | None = None,
                     dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write config.json and safetensors (sharded with an index when the tensors
    exceed ``max_shard_bytes``). ``layout`` "causal_lm" is what
    ``Qwen3_5ForCausalLM.save_pretrained`` writes; "conditional_generation" is
    the layout of the published multimodal checkpoints (text part only)."""
    if layout not in LAYOUT_PREFIX:
        raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUT_PREFIX)}")
    _check_weights(config, weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(_hf_config(config, layout), indent=2) + "\n")
    prefix = LAYOUT_PREFIX[layout]
    tensors = {prefix + name: t.to(torch.float32 if is_float32_vector(name) else dtype).contiguous()
               for name, t in weights.items()}
    shards = _split_into_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(tensors, out_dir / SINGLE_FILE, metadata={"format": "pt"})
        return out_dir
    weight_map = {}
    for n, shard in enumerate(shards, start=1):
        file = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k] for k in shard}, out_dir / file, metadata={"format": "pt"})
        weight_map.update({k: file for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return out_dir


def _check_weights(config: ModelConfig, weights: dict[str, torch.Tensor]) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CheckpointError(f"weights do not match the config: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise CheckpointError(f"weight {name!r} has shape {list(weights[name].shape)}, "
                                  f"expected {list(shape)}")


def _hf_config(config: ModelConfig, layout: str) -> dict:
    text = config.to_hf_dict()
    if layout == "causal_lm":
        return text
    del text["architectures"]
    return {"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
            "text_config": text, "tie_word_embeddings": True}


def _split_into_shards(tensors: dict[str, torch.Tensor], max_shard_bytes: int | None) -> list[list[str]]:
    """Consecutive groups of tensor names, each under ``max_shard_bytes`` unless
    one tensor alone is larger."""
    if max_shard_bytes is None:
        return [list(tensors)]
    shards: list[list[str]] = [[]]
    size = 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


# ---- random checkpoints -------------------------------------------------

MATRIX_STD = 0.02
NORM_STD = 0.1
A_RANGE = (1.0, 16.0)
DT_RANGE = (1e-3, 1e-1)
# Confident weights (see _successor_weights). Ids from n = min(intermediate_size,
# vocab_size) on embed as a copy of id t mod n scaled by ALIAS_SCALE: as inputs
# they act like that id, as outputs they score ALIAS_SCALE times its logit.
ALIAS_SCALE = 0.5
# The last MLP's gate pre-activation on the input's own detector unit; the
# other units see about DETECTOR_GATE / sqrt(hidden_size), and silu(g) * g ~ g^2
# singles the match out while bf16 stays far from overflow.
DETECTOR_GATE = 4.0
# The last MLP's output over the embedding, per element: the successor's
# direction swamps the input token's own in the final hidden state.
SUCCESSOR_GAIN = 16.0


def random_weights(config: ModelConfig, seed: int, confident: bool = False,
                   dtype: torch.dtype = torch.bfloat16, progress: bool = False,
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Random weights shaped like a trained model's, a function of ``seed`` alone:
    each tensor has its own generator seeded from (seed, name), so a tensor does
    not change when other tensors or the vocabulary size do. Matrices come in
    ``dtype``, the float32 vectors in float32.

    ``confident`` weights make greedy decoding walk a fixed cycle through the
    first ``n = min(intermediate_size, vocab_size)`` token ids (in a seeded
    random order): the next token is the input token's successor, ahead of
    every other token by a logit gap far wider than bf16 rounding (over 15 in
    tiny_config, hundreds at Qwen3.5-0.8B shapes); the context only adds small
    perturbations. A bf16 backend and the float32 reference thus produce the
    same long continuation, which never repeats its input token, so comparing
    their greedy tokens also checks how each feeds a token back. Only the
    embedding and the last layer's MLP differ from plain random weights; they
    also depend on n and on which layer is last. The tensors are drawn on the
    CPU (the same values everywhere) and then moved to ``device``."""
    shapes = expected_shapes(config)
    successor = _successor_weights(config, seed, dtype) if confident else {}
    return {name: (successor[name] if name in successor else _random_tensor(name, shape, seed, config, dtype)).to(device)
            for name, shape in tqdm(shapes.items(), desc="random weights", unit="tensor",
                                    disable=not progress)}


def _random_tensor(name: str, shape: tuple[int, ...], seed: int, config: ModelConfig,
                   dtype: torch.dtype) -> torch.Tensor:
    g = _generator(seed, name)
    if name.endswith("A_log"):
        # decay rates A spread over the range trained models use
        return torch.empty(shape).uniform_(*A_RANGE, generator=g).log_()
    if name.endswith("dt_bias"):
        # softplus^-1 of a log-uniform time step, as Mamba initialises it:
        # memories that fade over a few to a few hundred tokens
        dt = torch.empty(shape).uniform_(*map(math.log, DT_RANGE), generator=g).exp_()
        return dt + torch.log(-torch.expm1(-dt))
    if is_zero_centred_norm(name):
        return torch.empty(shape).normal_(0.0, NORM_STD, generator=g)
    if name.endswith("norm.weight"):
        return torch.empty(shape).normal_(1.0, NORM_STD, generator=g)
    if name.endswith("conv1d.weight"):
        std = 1.0 / math.sqrt(config.linear_conv_kernel_dim)  # keeps the conv output's scale
        return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=g)
    return torch.empty(shape, dtype=dtype).normal_(0.0, MATRIX_STD, generator=g)


def _successor_weights(config: ModelConfig, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The embedding and last MLP of confident weights.

    Token t embeds as ``base[t mod n]`` (ids >= n scaled by ALIAS_SCALE), the
    base rows unit-variance Gaussians, nearly orthogonal in hidden_size
    dimensions. In the last MLP, unit j < n detects base row j (gate and up
    rows both along it, so silu(g) * u ~ g^2 for the matching input and ~0
    otherwise) and writes base row cycle[j]. After the final norm the hidden
    state points along the successor's embedding, and the tied output
    projection scores it about hidden_size * (1 - ALIAS_SCALE) above any other
    token (its aliases; unrelated tokens score ~ sqrt(hidden_size)). Units from
    n on keep plain random rows."""
    h, n = config.hidden_size, min(config.intermediate_size, config.vocab_size)
    base = torch.randn(n, h, generator=_generator(seed, "confident/base"))
    order = torch.randperm(n, generator=_generator(seed, "confident/cycle"))
    cycle = torch.empty(n, dtype=torch.long)
    cycle[order] = order.roll(-1)                       # cycle[order[i]] = order[i + 1]

    ids = torch.arange(config.vocab_size)
    embedding = base[ids % n] * torch.where(ids < n, 1.0, ALIAS_SCALE)[:, None]
    # A normalised input matching base row j has base[j] . x ~ hidden_size.
    detector = base * (DETECTOR_GATE / h)
    match = DETECTOR_GATE * torch.nn.functional.silu(torch.tensor(DETECTOR_GATE))
    writer = base[cycle].T * (SUCCESSOR_GAIN / float(match))

    last = f"layers.{config.num_hidden_layers - 1}.mlp."

    def plain(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return _random_tensor(last + name, shape, seed, config, torch.float32)

    m = config.intermediate_size
    gate, up = plain("gate_proj.weight", (m, h)), plain("up_proj.weight", (m, h))
    down = plain("down_proj.weight", (h, m))
    gate[:n], up[:n], down[:, :n] = detector, detector, writer
    weights = {"embed_tokens.weight": embedding, last + "gate_proj.weight": gate,
               last + "up_proj.weight": up, last + "down_proj.weight": down}
    return {name: t.to(dtype) for name, t in weights.items()}


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(_tensor_seed(seed, name))


def _tensor_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_random_checkpoint(out_dir: str | Path, config: ModelConfig, seed: int, confident: bool = False,
                           *, layout: str = "causal_lm", max_shard_bytes: int | None = None,
                           dtype: torch.dtype = torch.bfloat16, tokenizer: bool = True,
                           progress: bool = False) -> Path:
    """Write a random checkpoint (see ``random_weights``) to ``out_dir``, with a
    tokenizer.json when ``tokenizer`` is set."""
    weights = random_weights(config, seed, confident=confident, dtype=dtype, progress=progress)
    write_checkpoint(out_dir, config, weights, layout=layout, max_shard_bytes=max_shard_bytes,
                     dtype=dtype)
    if tokenizer:
        from .tokenizer import write_tokenizer_json
        write_tokenizer_json(out_dir)
    return Path(out_dir)


# ---- the embedded default -----------------------------------------------

DEFAULT_SEED = 0
# Bump when random_weights changes, so caches built by older code are not reused.
RANDOM_WEIGHTS_VERSION = 2


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where megadelta keeps built artifacts: the argument, else $MEGADELTA_CACHE,
    else ~/.cache/megadelta."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("MEGADELTA_CACHE") or Path.home() / ".cache" / "megadelta")


def cached_random_checkpoint(config: ModelConfig, seed: int, confident: bool = False,
                             cache_dir: str | Path | None = None, progress: bool = False) -> Path:
    """A random checkpoint under the cache, built on first use. The directory
    name hashes everything the weights depend on, so a changed config or
    generator never reuses a stale build. It is written to a temporary
    directory and renamed into place: a crash never leaves half a checkpoint,
    and concurrent builders end with one."""
    recipe = json.dumps([config.to_hf_dict(), seed, confident, RANDOM_WEIGHTS_VERSION], sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    kind = "confident" if confident else "random"
    root = cache_root(cache_dir)
    final = root / f"{config.name}-{kind}-seed{seed}-{digest}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        make_random_checkpoint(tmp, config, seed, confident=confident, progress=progress)
        tmp.rename(final)
    except OSError:
        if not final.is_dir():  # not merely a lost race with another builder
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def default_checkpoint(cache_dir: str | Path | None = None, progress: bool = False) -> Path:
    """The embedded default: a Qwen3.5-0.8B-shaped confident random checkpoint
    (seed 0) with the Qwen3.5 tokenizer; about 10 s and 1.5 GB to build once."""
    return cached_random_checkpoint(QWEN35_0_8B, DEFAULT_SEED, confident=True,
                                    cache_dir=cache_dir, progress=progress)
