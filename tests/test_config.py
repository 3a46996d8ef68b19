import json
from pathlib import Path

import pytest

from megadelta.config import (ATTENTION, DELTANET, PRESETS, QWEN35_0_8B, QWEN35_2B,
                              QWEN35_GROUPED_VALUE, ConfigError, ModelConfig, tiny_config)

# ../shared beside the repository (in CI a copy beside the clone)
SHARED_CONFIG = Path(__file__).resolve().parents[2] / "shared" / "qwen3.5-0.8b" / "config.json"


def nested(config: ModelConfig) -> dict:
    """The published multimodal form: text fields under text_config."""
    text = config.to_hf_dict()
    del text["architectures"]
    return {"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
            "text_config": text, "tie_word_embeddings": True}


@pytest.mark.skipif(not SHARED_CONFIG.is_file(), reason=f"{SHARED_CONFIG} is not present")
def test_published_0_8b_config_parses_to_preset():
    config = ModelConfig.from_json(SHARED_CONFIG)
    assert config == QWEN35_0_8B
    assert config.name == "qwen3.5-0.8b"  # named after its directory
    rope = json.loads(SHARED_CONFIG.read_text())["text_config"]["rope_parameters"]
    assert QWEN35_0_8B.to_hf_dict()["rope_parameters"]["mrope_section"] == rope["mrope_section"]


def test_0_8b_derived_sizes():
    c = QWEN35_0_8B
    assert c.deltanet_layers == (0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22)
    assert c.attention_layers == (3, 7, 11, 15, 19, 23)
    assert (c.key_dim, c.value_dim, c.conv_dim, c.conv_state_len) == (2048, 2048, 6144, 3)
    assert (c.q_size, c.kv_size, c.queries_per_kv_head, c.rotary_dim) == (2048, 512, 4, 64)
    assert c.num_params() == 752_393_024
    # README: about 0.99 GB of layer weights plus 0.51 GB of output projection in bf16
    # and about 1.50 GB to read per decode step
    assert c.layer_params() * 2 / 1e9 == pytest.approx(0.99, abs=0.01)
    assert c.vocab_size * c.hidden_size * 2 / 1e9 == pytest.approx(0.51, abs=0.01)
    assert c.num_params() * 2 / 1e9 == pytest.approx(1.50, abs=0.01)
    # plus the float32 DeltaNet state and conv state (3 past inputs of 6,144 channels), read and written
    assert c.decode_bytes_per_step() == c.num_params() * 2 + 2 * 18 * (16 * 128 * 128 + 6144 * 3) * 4


@pytest.mark.parametrize("config", [*PRESETS.values(), tiny_config()], ids=lambda c: c.name)
def test_flat_and_nested_forms_round_trip(config):
    assert ModelConfig.from_hf_dict(config.to_hf_dict()) == config
    assert ModelConfig.from_hf_dict(nested(config)) == config


def test_flat_form_loads_in_transformers():
    from transformers import Qwen3_5TextConfig

    hf = Qwen3_5TextConfig(**QWEN35_GROUPED_VALUE.to_hf_dict())
    assert hf.layer_types == list(QWEN35_GROUPED_VALUE.layer_types)
    assert hf.linear_num_value_heads == 32 and hf.head_dim == 256
    assert hf.rope_parameters["partial_rotary_factor"] == 0.25


def test_from_json_reads_a_model_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(nested(QWEN35_2B)))
    config = ModelConfig.from_json(tmp_path)
    assert config == QWEN35_2B and config.name == tmp_path.name


def test_2b_and_grouped_value_shapes():
    assert (QWEN35_2B.hidden_size, QWEN35_2B.intermediate_size) == (2048, 6144)
    assert QWEN35_2B.num_params() > 1.8e9
    g = QWEN35_GROUPED_VALUE
    assert g.value_heads_per_key_head == 2
    assert (g.key_dim, g.value_dim, g.conv_dim) == (2048, 4096, 8192)


def test_layer_types_default_from_full_attention_interval():
    d = QWEN35_0_8B.to_hf_dict()
    del d["layer_types"]
    assert ModelConfig.from_hf_dict(d).layer_types == QWEN35_0_8B.layer_types
    d.update(full_attention_interval=2)
    assert ModelConfig.from_hf_dict(d).layer_types == (DELTANET, ATTENTION) * 12


def test_eos_list_and_defaults():
    d = tiny_config().to_hf_dict()
    d["eos_token_id"] = [248046, 248044]
    for key in ("rms_norm_eps", "max_position_embeddings", "head_dim"):
        del d[key]
    config = ModelConfig.from_hf_dict(d)
    assert config.eos_token_id == 248046
    assert config.rms_norm_eps == 1e-6 and config.max_position_embeddings == 262144
    assert config.head_dim == 64 // 4  # hidden_size / num_attention_heads


@pytest.mark.parametrize("overrides, message", [
    (dict(num_hidden_layers=5), "layer_types has 4 entries but num_hidden_layers is 5"),
    (dict(layer_types=(DELTANET, "sliding_attention", DELTANET, ATTENTION)),
     r"unsupported layer types \['sliding_attention'\]"),
    (dict(hidden_size=0), "hidden_size must be positive, got 0"),
    (dict(num_key_value_heads=3), r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"),
    (dict(linear_num_value_heads=3),
     r"linear_num_value_heads \(3\) must be a multiple of linear_num_key_heads \(2\)"),
    (dict(partial_rotary_factor=0.03125), "must give an even number of rotary dims"),  # 1 dim
    (dict(partial_rotary_factor=1.5), "must give an even number of rotary dims"),
    (dict(tie_word_embeddings=False), "only tied word embeddings"),
])
def test_validation_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(architectures=["Qwen3NextForCausalLM"]), "unsupported architecture"),
    (lambda d: d.update(model_type="qwen3_next"), "unsupported model_type 'qwen3_next'"),
    (lambda d: d["rope_parameters"].update(rope_type="yarn"), "unsupported rope_type 'yarn'"),
    (lambda d: d.pop("linear_key_head_dim"), "missing the field 'linear_key_head_dim'"),
])
def test_unsupported_hf_configs(edit, message):
    d = tiny_config().to_hf_dict()
    edit(d)
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_hf_dict(d)


def test_from_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config.json found"):
        ModelConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json(tmp_path)


def test_replace_validates():
    assert QWEN35_0_8B.replace(hidden_size=2048, intermediate_size=6144) == QWEN35_2B
    with pytest.raises(ConfigError):
        QWEN35_0_8B.replace(num_hidden_layers=23)
