"""Training algorithms by name: ``algorithm: {name: ppo, ...}`` in a config.

Each algorithm is one module with its typed config (a subclass of :class:`AlgorithmConfig`) and
an :class:`Algorithm` subclass; adding one means writing that module and listing it here.
"""

from __future__ import annotations

from trainers.algorithms.base import Advantages, Algorithm, AlgorithmConfig, RolloutSetup
from trainers.algorithms.grpo import GRPO, GRPOConfig
from trainers.algorithms.ppo import PPO, PPOConfig
from trainers.schema import ConfigError

ALGORITHMS: dict[str, type[Algorithm]] = {"ppo": PPO, "grpo": GRPO}


def algorithm_class(name: str) -> type[Algorithm]:
    if name not in ALGORITHMS:
        raise ConfigError(
            f"algorithm.name {name!r} is unknown (known: {', '.join(sorted(ALGORITHMS))})"
        )
    return ALGORITHMS[name]


def make_algorithm(config: AlgorithmConfig) -> Algorithm:
    return algorithm_class(config.name)(config)


__all__ = [
    "ALGORITHMS",
    "GRPO",
    "PPO",
    "Advantages",
    "Algorithm",
    "AlgorithmConfig",
    "GRPOConfig",
    "PPOConfig",
    "RolloutSetup",
    "algorithm_class",
    "make_algorithm",
]
