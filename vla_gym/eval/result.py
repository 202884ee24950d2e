"""The result every evaluation protocol returns."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EvalResult:
    """One evaluation: the benchmark's headline metrics, per-task success and a report.

    ``metrics`` holds the headline numbers under the benchmark's own names, the main one
    first and named by ``headline`` (CALVIN ``avg_len``, Meta-World ``success`` = "Avg.",
    LIBERO ``success``, the generic protocol ``success_once``). ``details`` keeps the
    protocol's raw records (CALVIN chain lengths, LIBERO trials, ...).
    """

    protocol: str  # e.g. "calvin/D", "metaworld/MT50", "libero/goal", "generic"
    env_id: str
    policy: str
    headline: str
    metrics: dict[str, float]
    per_task: dict[str, float]  # task -> success rate (CALVIN: per subtask)
    episodes: int  # episodes run (CALVIN: chains)
    env_steps: int  # native env steps executed
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    report: str = ""  # the protocol's printable report

    @property
    def score(self) -> float:
        """The headline metric's value."""
        return self.metrics[self.headline]

    def __str__(self) -> str:
        return self.report

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars and tuples in ``details`` as JSON values."""
    return value.item() if hasattr(value, "item") else str(value)
