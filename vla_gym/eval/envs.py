"""The vector env every evaluation protocol runs on."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym

from vla_gym.vector import BatchedVectorEnv, make_vec

BACKENDS = ("auto", "sync", "subproc", "ray")
# make_vec's own options (devices=, resources_per_worker=, ...): they travel with the env kwargs
VECTOR_OPTIONS = frozenset(inspect.signature(make_vec).parameters) - {
    "env_id",
    "num_envs",
    "env_kwargs",
}


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    backend: str = "auto",
    autoreset_mode: gym.vector.AutoresetMode = gym.vector.AutoresetMode.NEXT_STEP,
    step_timeout: float | None = None,
    **env_kwargs: Any,
) -> BatchedVectorEnv:
    """``vla_gym.make_vec`` for an evaluation: ``backend="auto"`` runs one env in process and
    several in worker processes; ``step_timeout=None`` keeps the vector layer's default."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = "subproc" if num_envs > 1 else "sync"
    timeout = {} if step_timeout is None else {"step_timeout": step_timeout}
    return make_vec(
        env_id, num_envs, backend=backend, autoreset_mode=autoreset_mode, **timeout, **env_kwargs
    )


def env_only(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` less make_vec's own options: what ``gym.make`` takes."""
    return {key: value for key, value in env_kwargs.items() if key not in VECTOR_OPTIONS}


def check_protocol_kwargs(
    protocol: str, env_kwargs: dict[str, Any], fixed: tuple[str, ...]
) -> None:
    """Refuse env kwargs the protocol sets itself (they would change what is measured)."""
    bad = sorted(set(env_kwargs) & set(fixed))
    if bad:
        raise ValueError(f"the {protocol} evaluation fixes {bad}; do not pass them")


def trials_per_task(episodes: int, num_tasks: int, full: int) -> int:
    """Trials per task for an episode budget: every task at least once, at most ``full``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes!r}")
    return max(1, min(full, -(-episodes // num_tasks)))
