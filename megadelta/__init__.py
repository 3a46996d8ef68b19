"""megadelta: Qwen3.5 hybrid Gated-DeltaNet + attention LLMs in one persistent CUDA megakernel.

    from megadelta import Engine, SamplingParams
    engine = Engine.load()                      # the embedded default model
    print(engine.chat([{"role": "user", "content": "Hi"}]).text)

Names are imported on first use, so ``import megadelta`` (and the CLI's
``--help``) does not pay for importing torch.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "engine", "Completion": "engine", "Delta": "engine",
    "SamplingParams": "sampling",
    "ModelConfig": "config", "ConfigError": "config",
    "ContextLengthError": "state",
    "CheckpointError": "checkpoint",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'megadelta' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
