"""Fixtures shared by the test modules, and where the shared asset folders are.

Tests that need the CALVIN/LIBERO asset folders or the reference files import ``SHARED_DIR``
(``from conftest import SHARED_DIR``) and skip with the reason when what they need is absent.
It is ``../shared`` beside the clone, or ``$VLA_GYM_SHARED_DIR``: pointing that at a missing
folder runs the suite as on a fresh clone without ``../shared`` (``.ci/run`` does it once).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DIR = Path(
    os.environ.get("VLA_GYM_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared"
)


def pytest_report_header() -> str:
    state = "present" if SHARED_DIR.is_dir() else "absent: tests that need it skip"
    return f"shared assets: {SHARED_DIR} ({state})"


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
