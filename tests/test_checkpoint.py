import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from megadelta import checkpoint as ck
from megadelta.checkpoint import CheckpointError
from megadelta.config import ATTENTION, DELTANET, QWEN35_0_8B, tiny_config

# The tiny config with a small vocabulary: writing and loading it takes milliseconds.
SMALL = tiny_config(vocab_size=512, eos_token_id=511, pad_token_id=510)


@pytest.fixture(scope="module")
def small_weights():
    return ck.random_weights(SMALL, seed=0)


@pytest.fixture
def small_ckpt(tmp_path, small_weights):
    return ck.write_checkpoint(tmp_path / "ckpt", SMALL, small_weights)


def assert_same_weights(loaded, written, dtype=torch.bfloat16):
    assert list(loaded) == list(ck.expected_shapes(SMALL))
    for name, t in written.items():
        want = torch.float32 if ck.is_float32_vector(name) else dtype
        assert loaded[name].dtype == want, name
        assert torch.equal(loaded[name], t.to(want)), name


# ---- the table ------------------------------------------------------------------------

def test_expected_shapes_match_transformers_state_dict():
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    hf = Qwen3_5ForCausalLM(Qwen3_5TextConfig(**SMALL.to_hf_dict()))
    hf_shapes = {k.removeprefix("model."): tuple(v.shape) for k, v in hf.state_dict().items()
                 if k != "lm_head.weight"}
    assert ck.expected_shapes(SMALL) == hf_shapes


def test_expected_shapes_of_qwen35_0_8b():
    shapes = ck.expected_shapes(QWEN35_0_8B)
    assert shapes["embed_tokens.weight"] == (248320, 1024)
    assert shapes["layers.0.linear_attn.in_proj_qkv.weight"] == (6144, 1024)
    assert shapes["layers.0.linear_attn.conv1d.weight"] == (6144, 1, 4)
    assert shapes["layers.0.linear_attn.out_proj.weight"] == (1024, 2048)
    assert shapes["layers.3.self_attn.q_proj.weight"] == (4096, 1024)
    assert shapes["layers.3.self_attn.k_proj.weight"] == (512, 1024)
    assert shapes["layers.3.self_attn.o_proj.weight"] == (1024, 2048)
    assert "layers.3.linear_attn.A_log" not in shapes and "layers.0.self_attn.q_proj.weight" not in shapes
    assert sum(math.prod(s) for s in shapes.values()) == QWEN35_0_8B.num_params()


def test_float32_vectors_are_exactly_the_small_vectors():
    float32 = {n for n in ck.expected_shapes(SMALL) if ck.is_float32_vector(n)}
    suffixes = {n.rsplit(".", 2)[-2] if n.endswith(".weight") else n.rsplit(".", 1)[-1] for n in float32}
    assert suffixes == {"A_log", "dt_bias", "norm", "input_layernorm", "post_attention_layernorm",
                        "q_norm", "k_norm"}
    assert all(len(ck.expected_shapes(SMALL)[n]) == 1 for n in float32)


# ---- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["causal_lm", "conditional_generation"])
@pytest.mark.parametrize("sharded", [False, True])
def test_round_trip(tmp_path, small_weights, layout, sharded):
    ck.write_checkpoint(tmp_path, SMALL, small_weights, layout=layout,
                        max_shard_bytes=100_000 if sharded else None)
    assert (tmp_path / ck.INDEX_FILE).is_file() == sharded
    if sharded:
        assert len(set(json.loads((tmp_path / ck.INDEX_FILE).read_text())["weight_map"].values())) > 2
    assert ck.load_config(tmp_path) == SMALL
    assert_same_weights(ck.load_weights(tmp_path, SMALL), small_weights)


def test_stored_dtypes_and_load_dtype(small_ckpt, small_weights):
    with safe_open(small_ckpt / ck.SINGLE_FILE, "pt") as f:
        assert f.get_slice("model.layers.0.linear_attn.A_log").get_dtype() == "F32"
        assert f.get_slice("model.norm.weight").get_dtype() == "F32"
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
    assert_same_weights(ck.load_weights(small_ckpt, SMALL, dtype=torch.float32), small_weights,
                        dtype=torch.float32)


def test_published_layout_skips_vision_mtp_and_tied_head(tmp_path, small_weights):
    ck.write_checkpoint(tmp_path, SMALL, small_weights, layout="conditional_generation")
    path = tmp_path / ck.SINGLE_FILE
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors.update({"model.visual.blocks.0.attn.qkv.weight": torch.ones(6, 4),
                    "mtp.fc.weight": torch.ones(4, 4),
                    "lm_head.weight": tensors["model.language_model.embed_tokens.weight"].clone()})
    save_file(tensors, path)
    assert_same_weights(ck.load_weights(tmp_path, SMALL), small_weights)


def test_transformers_loads_our_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    config = tiny_config()  # the full vocabulary, so the config is the real tokenizer's
    weights = ck.random_weights(config, seed=3)
    ck.write_checkpoint(tmp_path, config, weights)
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                       output_loading_info=True)
    assert type(model).__name__ == "Qwen3_5ForCausalLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = model.state_dict()
    for name, t in weights.items():
        assert torch.equal(state["model." + name], t.float()), name
    assert torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])


def test_make_random_checkpoint_adds_tokenizer(tmp_path):
    ck.make_random_checkpoint(tmp_path, SMALL, seed=1)
    assert (tmp_path / "tokenizer.json").is_file()
    assert_same_weights(ck.load_weights(tmp_path, SMALL), ck.random_weights(SMALL, seed=1))


def test_write_rejects_weights_that_do_not_match_config(tmp_path, small_weights):
    bad = dict(small_weights, **{"norm.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"norm\.weight.*\[3\].*\[64\]"):
        ck.write_checkpoint(tmp_path, SMALL, bad)
    with pytest.raises(ValueError, match="unknown layout"):
        ck.write_checkpoint(tmp_path, SMALL, small_weights, layout="gguf")


# ---- bad checkpoints ------------------------------------------------------------------

def rewrite_tensors(path: Path, edit) -> None:
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors)
    save_file(tensors, path)


def test_missing_tensor(small_ckpt):
    rewrite_tensors(small_ckpt / ck.SINGLE_FILE,
                    lambda t: t.pop("model.layers.3.self_attn.k_norm.weight"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensor "
                                              r"model\.layers\.3\.self_attn\.k_norm\.weight \[32\]"):
        ck.load_weights(small_ckpt, SMALL)


def test_wrong_shape(small_ckpt):
    rewrite_tensors(small_ckpt / ck.SINGLE_FILE,
                    lambda t: t.update({"model.layers.1.mlp.up_proj.weight": torch.zeros(100, 64)}))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.1\.mlp\.up_proj"
                                              r"\.weight' has shape \[100, 64\], expected \[128, 64\]"):
        ck.load_weights(small_ckpt, SMALL)


def test_config_for_another_model(small_ckpt):
    with pytest.raises(CheckpointError, match=r"has shape \[512, 64\], expected \[512, 128\]"):
        ck.load_weights(small_ckpt, SMALL.replace(hidden_size=128))


def test_unknown_tensor_under_text_prefix(small_ckpt):
    rewrite_tensors(small_ckpt / ck.SINGLE_FILE,
                    lambda t: t.update({"model.layers.0.mlp.gate_proj.bias": torch.zeros(128)}))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unexpected tensor "
                                              r"'model\.layers\.0\.mlp\.gate_proj\.bias'"):
        ck.load_weights(small_ckpt, SMALL)


def test_tensor_under_both_prefixes(small_ckpt):
    rewrite_tensors(small_ckpt / ck.SINGLE_FILE,
                    lambda t: t.update({"model.language_model.norm.weight": t["model.norm.weight"].clone()}))
    with pytest.raises(CheckpointError, match=r"'norm\.weight' appears twice"):
        ck.load_weights(small_ckpt, SMALL)


def test_quantized_tensor(small_ckpt):
    rewrite_tensors(small_ckpt / ck.SINGLE_FILE, lambda t: t.update(
        {"model.layers.0.mlp.down_proj.weight": torch.zeros(64, 128, dtype=torch.int8)}))
    with pytest.raises(CheckpointError, match=r"down_proj\.weight' is stored as I8"):
        ck.load_weights(small_ckpt, SMALL)


def test_truncated_file(small_ckpt):
    path = small_ckpt / ck.SINGLE_FILE
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file is truncated: tensor "
                                              r"'model\.[\w.]+' needs bytes up to"):
        ck.load_weights(small_ckpt, SMALL)


def test_corrupt_header(small_ckpt):
    path = small_ckpt / ck.SINGLE_FILE
    data = bytearray(path.read_bytes())
    data[8:16] = b"#garbage"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors header: "
                                              r"not valid JSON"):
        ck.load_weights(small_ckpt, SMALL)


def test_header_length_beyond_file(small_ckpt):
    path = small_ckpt / ck.SINGLE_FILE
    path.write_bytes((10**9).to_bytes(8, "little") + path.read_bytes()[8:])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors header: it claims"):
        ck.load_weights(small_ckpt, SMALL)


def test_missing_shard(tmp_path, small_weights):
    ck.write_checkpoint(tmp_path, SMALL, small_weights, max_shard_bytes=100_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"index\.json: shard {shard.name} is missing; it should "
                                              rf"hold \d+ tensors, e\.g\. 'model\.layers"):
        ck.load_weights(tmp_path, SMALL)


def test_tensor_missing_from_its_shard(tmp_path, small_weights):
    ck.write_checkpoint(tmp_path, SMALL, small_weights, max_shard_bytes=100_000)
    index = json.loads((tmp_path / ck.INDEX_FILE).read_text())
    shard = index["weight_map"]["model.norm.weight"]
    rewrite_tensors(tmp_path / shard, lambda t: t.pop("model.norm.weight"))
    with pytest.raises(CheckpointError, match=rf"{shard}: has no tensor 'model\.norm\.weight'"):
        ck.load_weights(tmp_path, SMALL)


def test_no_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMALL.to_hf_dict()))
    with pytest.raises(CheckpointError, match="no model.safetensors or model.safetensors.index.json"):
        ck.load_weights(tmp_path, SMALL)


def test_unsupported_architecture(small_ckpt):
    cfg = json.loads((small_ckpt / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLM"]
    (small_ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json: unsupported architecture \['LlamaForCausalLM'\]"):
        ck.load_config(small_ckpt)


def test_quantized_config(small_ckpt):
    cfg = json.loads((small_ckpt / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8"}
    (small_ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json: quantized checkpoints \(fp8\)"):
        ck.load_config(small_ckpt)


def test_missing_or_invalid_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        ck.load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        ck.load_config(tmp_path)


# ---- random weights -------------------------------------------------------------------

def test_random_weights_are_a_function_of_the_seed(small_weights):
    again = ck.random_weights(SMALL, seed=0)
    other = ck.random_weights(SMALL, seed=1)
    for name, t in small_weights.items():
        assert torch.equal(t, again[name]), name
        assert not torch.equal(t, other[name]), name
    # per-tensor generators: the layers do not depend on the vocabulary size
    bigger_vocab = ck.random_weights(SMALL.replace(vocab_size=1024), seed=0)
    assert torch.equal(bigger_vocab["layers.2.mlp.up_proj.weight"], small_weights["layers.2.mlp.up_proj.weight"])


def test_random_weights_look_trained(small_weights):
    for name, t in small_weights.items():
        assert t.dtype == (torch.float32 if ck.is_float32_vector(name) else torch.bfloat16), name
        assert torch.isfinite(t).all() and t.float().std() > 0, name
    a = torch.stack([t for n, t in small_weights.items() if n.endswith("A_log")]).exp()
    assert a.min() >= 1 and a.max() <= 16
    dt = torch.nn.functional.softplus(torch.stack([t for n, t in small_weights.items()
                                                   if n.endswith("dt_bias")]))
    assert dt.min() >= 0.99e-3 and dt.max() <= 1.01e-1
    zero_centred = torch.cat([t for n, t in small_weights.items() if ck.is_zero_centred_norm(n)])
    assert zero_centred.abs().mean() < 0.2
    gains = small_weights["layers.0.linear_attn.norm.weight"]
    assert (gains - 1).abs().mean() < 0.2
    assert abs(small_weights["layers.0.mlp.gate_proj.weight"].float().std() - ck.MATRIX_STD) < 0.002


def greedy_with_margins(model, prompt: list[int], steps: int) -> tuple[list[int], list[float]]:
    """Greedy tokens after ``prompt``, and the top-1 minus top-2 logit at each step."""
    state = model.new_state(len(prompt) + steps)
    logits = model.prefill(prompt, state)
    tokens, margins = [], []
    for _ in range(steps):
        top2 = logits.topk(2).values
        margins.append(float(top2[0] - top2[1]))
        tokens.append(int(logits.argmax()))
        logits = model.decode(tokens[-1], state)
    return tokens, margins


@pytest.mark.parametrize("config, steps", [
    (tiny_config(), 160),   # more steps than the cycle is long: it comes round again
    (QWEN35_0_8B.replace(num_hidden_layers=4, layer_types=(DELTANET,) * 3 + (ATTENTION,)), 48),
], ids=["tiny", "0.8b-4-layers"])
def test_confident_weights_walk_a_cycle_that_bf16_cannot_flip(config, steps):
    from megadelta.model import Qwen35Model

    weights = ck.random_weights(config, seed=0, confident=True)
    prompt = torch.randint(0, config.vocab_size, (24,), generator=torch.Generator().manual_seed(1)).tolist()
    tokens, margins = greedy_with_margins(Qwen35Model(config, weights, dtype=torch.float32), prompt, steps)
    bf16_tokens, _ = greedy_with_margins(Qwen35Model(config, weights, dtype=torch.bfloat16), prompt, steps)
    assert bf16_tokens == tokens
    cycle_length = min(config.intermediate_size, config.vocab_size)
    assert max(tokens) < cycle_length and len(set(tokens)) == min(steps, cycle_length)
    assert all(t != previous for t, previous in zip(tokens, prompt[-1:] + tokens))
    assert tokens[cycle_length:] == tokens[:steps - cycle_length]
    assert min(margins) > config.hidden_size / 4, margins


# ---- the cache and the default --------------------------------------------------------

def test_cached_random_checkpoint_builds_once(tmp_path):
    path = ck.cached_random_checkpoint(SMALL, seed=2, cache_dir=tmp_path)
    assert path.parent == tmp_path and [p.name for p in tmp_path.iterdir()] == [path.name]
    stamp = (path / ck.SINGLE_FILE).stat().st_mtime_ns
    assert ck.cached_random_checkpoint(SMALL, seed=2, cache_dir=tmp_path) == path
    assert (path / ck.SINGLE_FILE).stat().st_mtime_ns == stamp
    assert_same_weights(ck.load_weights(path, ck.load_config(path)), ck.random_weights(SMALL, seed=2))
    assert ck.cached_random_checkpoint(SMALL, seed=3, cache_dir=tmp_path) != path


def test_cached_random_checkpoint_leaves_nothing_after_a_crash(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "write_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.cached_random_checkpoint(SMALL, seed=2, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_root_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MEGADELTA_CACHE", str(tmp_path))
    assert ck.cache_root() == tmp_path
    assert ck.cache_root(tmp_path / "x") == tmp_path / "x"


@pytest.mark.slow
def test_default_checkpoint(tmp_path):
    path = ck.default_checkpoint(cache_dir=tmp_path)
    assert ck.load_config(path) == QWEN35_0_8B
    assert (path / "tokenizer.json").is_file()
    weights = ck.load_weights(path, QWEN35_0_8B)
    assert sum(t.numel() for t in weights.values()) == QWEN35_0_8B.num_params()
    # seed 0 and confident: the first layer is that of a two-layer model with the same seed
    # (not a one-layer one: there the first layer is the last, whose MLP confident weights set)
    two_layers = ck.random_weights(QWEN35_0_8B.replace(num_hidden_layers=2, layer_types=(DELTANET,) * 2,
                                                       vocab_size=16), seed=0, confident=True)
    for name, t in two_layers.items():
        if name.startswith("layers.0."):
            assert torch.equal(weights[name], t), name
    # the confident embedding: ids from intermediate_size on repeat the first ones, scaled down
    embedding, n = weights["embed_tokens.weight"].float(), QWEN35_0_8B.intermediate_size
    assert embedding[:n].std() > 0.9
    assert torch.equal(embedding[n:2 * n], embedding[:n] * ck.ALIAS_SCALE)
    assert ck.default_checkpoint(cache_dir=tmp_path) == path
