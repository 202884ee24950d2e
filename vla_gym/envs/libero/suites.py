"""The LIBERO suites: names, registered IDs and step limits (no simulator imports).

Step limits are RLinf's (the RL recipes' reference): spatial 240, object 240, goal 320, 10 512,
90 512 policy steps. LeRobot / OpenVLA evaluation uses 280 / 280 / 300 / 520 / 400; pass
``max_steps=`` to match it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    env_id: str
    libero_name: str  # the key in libero.libero.benchmark.get_benchmark_dict()
    max_episode_steps: int


SUITES: dict[str, Suite] = {
    "spatial": Suite("VLA/LIBERO-Spatial-v0", "libero_spatial", 240),
    "object": Suite("VLA/LIBERO-Object-v0", "libero_object", 240),
    "goal": Suite("VLA/LIBERO-Goal-v0", "libero_goal", 320),
    "10": Suite("VLA/LIBERO-10-v0", "libero_10", 512),
    "90": Suite("VLA/LIBERO-90-v0", "libero_90", 512),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown LIBERO suite {name!r}; choose one of {sorted(SUITES)}")
    return SUITES[name]
