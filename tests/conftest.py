import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present (run scripts/gpu_suite.sh on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
