"""The four difficulty buckets Meta-World results are reported in, and their arithmetic.

The buckets (28 easy / 11 medium / 6 hard / 5 very hard) are a reporting convention, not part of
Meta-World. "Avg." in published tables is the mean of the bucket means, so each bucket weighs the
same however many tasks it holds; a bucket with no evaluated task is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BUCKETS: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press",
        "button-press-topdown",
        "button-press-topdown-wall",
        "button-press-wall",
        "coffee-button",
        "dial-turn",
        "door-close",
        "door-lock",
        "door-open",
        "door-unlock",
        "drawer-close",
        "drawer-open",
        "faucet-close",
        "faucet-open",
        "handle-press",
        "handle-press-side",
        "handle-pull",
        "handle-pull-side",
        "lever-pull",
        "plate-slide",
        "plate-slide-back",
        "plate-slide-back-side",
        "plate-slide-side",
        "reach",
        "reach-wall",
        "window-close",
        "window-open",
        "peg-unplug-side",
    ),
    "medium": (
        "basketball",
        "bin-picking",
        "box-close",
        "coffee-pull",
        "coffee-push",
        "hammer",
        "peg-insert-side",
        "push-wall",
        "soccer",
        "sweep",
        "sweep-into",
    ),
    "hard": ("assembly", "hand-insert", "pick-out-of-hole", "pick-place", "push", "push-back"),
    "very hard": ("shelf-place", "disassemble", "stick-pull", "stick-push", "pick-place-wall"),
}
TASK_BUCKET: dict[str, str] = {task: b for b, tasks in BUCKETS.items() for task in tasks}


def bucket_means(per_task: Mapping[str, float]) -> dict[str, float]:
    """Mean success per bucket over the tasks in ``per_task`` (buckets without tasks omitted)."""
    unknown = sorted(set(per_task) - set(TASK_BUCKET))
    if unknown:
        raise ValueError(f"tasks without a difficulty bucket: {unknown}")
    means = {}
    for bucket, tasks in BUCKETS.items():
        values = [float(per_task[t]) for t in tasks if t in per_task]
        if values:
            means[bucket] = float(np.mean(values))
    return means


def average_of_buckets(per_task: Mapping[str, float]) -> float:
    """Published "Avg.": the mean of the bucket means."""
    means = bucket_means(per_task)
    if not means:
        raise ValueError("no task results to average")
    return float(np.mean(list(means.values())))
