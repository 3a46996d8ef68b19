import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present (run scripts/gpu_suite.sh on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random checkpoint (float32, written once per test session). It has
    the full Qwen3.5 vocabulary, so the real tokenizer works with it, and plain
    (not confident) weights, so sampled text varies from token to token."""
    from megadelta.checkpoint import make_random_checkpoint
    from megadelta.config import tiny_config

    out = tmp_path_factory.mktemp("tiny-checkpoint")
    return make_random_checkpoint(out, tiny_config(), seed=0, dtype=torch.float32)
