"""Shared fixtures. Importing robust_paddle first preloads the system zlib before paddle (see _compat)."""

import os

import pytest

import robust_paddle  # noqa: F401  (must precede any paddle import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    import paddle

    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none here); run through benchmarks on a GPU machine")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO

