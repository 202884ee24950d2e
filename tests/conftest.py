"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny networks gain nothing from threads, and on a busy shared 2-core CPU OpenMP's
    spinning threads slow each step down many-fold; the setting is restored afterwards.

    Modules of small-model tests use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
