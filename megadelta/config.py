"""The model config: the single source of every shape in megadelta.

Parsed from a Hugging Face ``config.json`` in either form Qwen3.5 ships:
the multimodal ``Qwen3_5ForConditionalGeneration`` (text fields nested under
``text_config``) or the flat ``Qwen3_5ForCausalLM``. The reference model, the
checkpoint loader and the CUDA code generator all read shapes from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DELTANET = "linear_attention"
ATTENTION = "full_attention"

SUPPORTED_ARCHITECTURES = ("Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM")
SUPPORTED_MODEL_TYPES = ("qwen3_5", "qwen3_5_text")


class ConfigError(ValueError):
    """A config.json that megadelta cannot run, with the reason."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    layer_types: tuple[str, ...]
    # full-attention layers
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float
    partial_rotary_factor: float
    # Gated DeltaNet layers
    linear_num_key_heads: int
    linear_num_value_heads: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_conv_kernel_dim: int
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 262144
    eos_token_id: int = 248046
    pad_token_id: int | None = 248044
    name: str = field(default="qwen3.5", compare=False)

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived sizes -------------------------------------------------
    @property
    def deltanet_layers(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == DELTANET)

    @property
    def attention_layers(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == ATTENTION)

    @property
    def key_dim(self) -> int:
        """Width of the DeltaNet q (and k) projection: key heads x key head dim."""
        return self.linear_num_key_heads * self.linear_key_head_dim

    @property
    def value_dim(self) -> int:
        return self.linear_num_value_heads * self.linear_value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the depthwise causal conv: q | k | v."""
        return 2 * self.key_dim + self.value_dim

    @property
    def conv_state_len(self) -> int:
        """Past inputs per channel the conv needs at decode time."""
        return self.linear_conv_kernel_dim - 1

    @property
    def value_heads_per_key_head(self) -> int:
        return self.linear_num_value_heads // self.linear_num_key_heads

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def queries_per_kv_head(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def layer_params(self) -> int:
        """Parameters of the decoder layers (everything but the embedding)."""
        h, i = self.hidden_size, self.intermediate_size
        mlp = 3 * h * i + 2 * h
        deltanet = (h * (self.conv_dim + self.value_dim + 2 * self.linear_num_value_heads)
                    + self.conv_dim * self.linear_conv_kernel_dim
                    + 2 * self.linear_num_value_heads + self.linear_value_head_dim
                    + self.value_dim * h)
        attention = h * (2 * self.q_size + 2 * self.kv_size) + 2 * self.head_dim + self.q_size * h
        return (len(self.deltanet_layers) * (deltanet + mlp)
                + len(self.attention_layers) * (attention + mlp) + h)

    def num_params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        return self.layer_params() + embed * (1 if self.tie_word_embeddings else 2)

    def decode_bytes_per_step(self, weight_bytes: int = 2) -> int:
        """Bytes a batch-1 decode step must move: every weight once (the tied
        embedding counts once, read as the output projection) plus the FP32
        recurrent state of every DeltaNet layer, read and written: the delta
        rule's state and the conv's past inputs. KV-cache reads are context
        dependent and excluded."""
        per_layer = (self.linear_num_value_heads * self.linear_key_head_dim * self.linear_value_head_dim
                     + self.conv_dim * self.conv_state_len)
        return self.num_params() * weight_bytes + 2 * len(self.deltanet_layers) * per_layer * 4

    def prefill_flops_per_token(self, context: int = 0) -> float:
        """Matmul FLOPs per prompt token: 2 per layer weight, plus attention
        scores and values over ``context`` earlier positions."""
        attn = 4 * self.num_attention_heads * self.head_dim * context * len(self.attention_layers)
        return 2.0 * self.layer_params() + attn

    # ---- validation ----------------------------------------------------
    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(len(self.layer_types) == self.num_hidden_layers,
             f"layer_types has {len(self.layer_types)} entries but num_hidden_layers is "
             f"{self.num_hidden_layers}")
        bad = sorted(set(self.layer_types) - {DELTANET, ATTENTION})
        need(not bad, f"unsupported layer types {bad}; expected {DELTANET!r} or {ATTENTION!r}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim",
                     "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
                     "linear_value_head_dim", "linear_conv_kernel_dim"):
            need(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        need(self.num_attention_heads % self.num_key_value_heads == 0,
             f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
             f"num_key_value_heads ({self.num_key_value_heads})")
        need(self.linear_num_value_heads % self.linear_num_key_heads == 0,
             f"linear_num_value_heads ({self.linear_num_value_heads}) must be a multiple of "
             f"linear_num_key_heads ({self.linear_num_key_heads})")
        rot = self.head_dim * self.partial_rotary_factor
        need(0 < rot <= self.head_dim and rot == int(rot) and int(rot) % 2 == 0,
             f"partial_rotary_factor {self.partial_rotary_factor} x head_dim {self.head_dim} "
             f"must give an even number of rotary dims between 2 and head_dim")
        need(self.tie_word_embeddings, "only tied word embeddings are supported (Qwen3.5 ties them)")

    # ---- (de)serialisation ---------------------------------------------
    @classmethod
    def from_hf_dict(cls, cfg: dict, name: str = "qwen3.5") -> "ModelConfig":
        archs = cfg.get("architectures") or []
        if archs and not any(a in SUPPORTED_ARCHITECTURES for a in archs):
            raise ConfigError(f"unsupported architecture {archs}; megadelta runs "
                              f"{' or '.join(SUPPORTED_ARCHITECTURES)}")
        text = cfg.get("text_config", cfg)
        model_type = text.get("model_type", cfg.get("model_type"))
        if model_type is not None and model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"unsupported model_type {model_type!r}; expected one of "
                              f"{SUPPORTED_MODEL_TYPES}")
        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            raise ConfigError(f"unsupported rope_type {rope.get('rope_type')!r}")
        try:
            n_layers = int(text["num_hidden_layers"])
            layer_types = text.get("layer_types")
            if layer_types is None:
                interval = int(text.get("full_attention_interval", 4))
                layer_types = [ATTENTION if (i + 1) % interval == 0 else DELTANET
                               for i in range(n_layers)]
            eos = text.get("eos_token_id", cfg.get("eos_token_id", 248046))
            return cls(
                vocab_size=int(text["vocab_size"]),
                hidden_size=int(text["hidden_size"]),
                intermediate_size=int(text["intermediate_size"]),
                num_hidden_layers=n_layers,
                layer_types=tuple(layer_types),
                num_attention_heads=int(text["num_attention_heads"]),
                num_key_value_heads=int(text["num_key_value_heads"]),
                head_dim=int(text.get("head_dim")
                             or text["hidden_size"] // text["num_attention_heads"]),
                rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 1e7))),
                partial_rotary_factor=float(rope.get("partial_rotary_factor",
                                                     text.get("partial_rotary_factor", 0.25))),
                linear_num_key_heads=int(text["linear_num_key_heads"]),
                linear_num_value_heads=int(text["linear_num_value_heads"]),
                linear_key_head_dim=int(text["linear_key_head_dim"]),
                linear_value_head_dim=int(text["linear_value_head_dim"]),
                linear_conv_kernel_dim=int(text["linear_conv_kernel_dim"]),
                rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
                tie_word_embeddings=bool(text.get("tie_word_embeddings",
                                                  cfg.get("tie_word_embeddings", True))),
                max_position_embeddings=int(text.get("max_position_embeddings", 262144)),
                eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
                pad_token_id=text.get("pad_token_id", cfg.get("pad_token_id")),
                name=name,
            )
        except KeyError as e:
            raise ConfigError(f"config.json is missing the field {e.args[0]!r}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(data, name=path.parent.name or "qwen3.5")

    def to_hf_dict(self) -> dict:
        """The flat ``Qwen3_5ForCausalLM`` form, loadable by transformers."""
        d = asdict(self)
        for k in ("rope_theta", "partial_rotary_factor", "name"):
            d.pop(k)
        d["layer_types"] = list(self.layer_types)
        d.update(
            architectures=["Qwen3_5ForCausalLM"],
            model_type="qwen3_5_text",
            hidden_act="silu",
            attention_bias=False,
            attn_output_gate=True,
            torch_dtype="bfloat16",
            full_attention_interval=self._attention_interval(),
            rope_parameters={
                "rope_type": "default",
                "rope_theta": self.rope_theta,
                "partial_rotary_factor": self.partial_rotary_factor,
                "mrope_interleaved": True,
                "mrope_section": _mrope_section(self.rotary_dim),
            },
        )
        return d

    def _attention_interval(self) -> int:
        att = self.attention_layers
        return att[0] + 1 if att else self.num_hidden_layers + 1

    def replace(self, **changes) -> "ModelConfig":
        d = asdict(self)
        d.update(changes)
        d["layer_types"] = tuple(d["layer_types"])
        return ModelConfig(**d)


def _mrope_section(rotary_dim: int) -> list[int]:
    """Split rotary frequencies over (t, h, w) as Qwen does; for text all three
    share one position, so the split only matters for round-tripping."""
    half = rotary_dim // 2
    t = h = (half * 11 + 31) // 32
    return [t, h, half - t - h]


# The Qwen3.5-0.8B text model: the embedded default.
QWEN35_0_8B = ModelConfig(
    vocab_size=248320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
    layer_types=tuple([DELTANET, DELTANET, DELTANET, ATTENTION] * 6),
    num_attention_heads=8, num_key_value_heads=2, head_dim=256,
    rope_theta=1e7, partial_rotary_factor=0.25,
    linear_num_key_heads=16, linear_num_value_heads=16,
    linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4,
    max_position_embeddings=262144, name="qwen3.5-0.8b",
)

# Qwen3.5-2B shapes: hidden 2048, intermediate 6144 (same head layout).
QWEN35_2B = QWEN35_0_8B.replace(hidden_size=2048, intermediate_size=6144, name="qwen3.5-2b")

# A config with grouped value heads (32 value heads over 16 key heads), as the 9B has.
QWEN35_GROUPED_VALUE = QWEN35_0_8B.replace(linear_num_value_heads=32, name="qwen3.5-grouped-v")

PRESETS = {c.name: c for c in (QWEN35_0_8B, QWEN35_2B, QWEN35_GROUPED_VALUE)}


def tiny_config(**overrides) -> ModelConfig:
    """A small config exercising every layer type, GQA and grouped value heads;
    for tests and the CPU demo."""
    base = dict(
        vocab_size=248320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        layer_types=(DELTANET, DELTANET, DELTANET, ATTENTION),
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        rope_theta=1e7, partial_rotary_factor=0.25,
        linear_num_key_heads=2, linear_num_value_heads=4,
        linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=4,
        max_position_embeddings=4096, name="tiny",
    )
    base.update(overrides)
    base["layer_types"] = tuple(base["layer_types"])
    return ModelConfig(**base)
