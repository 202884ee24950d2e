"""Shared pieces of the resumable learning benchmarks: the per-seed state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_state(path: Path) -> dict[str, Any]:
    """A seed's saved progress (finished stages and their numbers); empty before the first run."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write atomically, so a run killed mid-write keeps the previous state."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
