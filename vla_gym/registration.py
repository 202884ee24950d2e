"""Registers every vla_gym ID with Gymnasium.

Each benchmark is a package ``vla_gym.envs.<name>`` whose ``__init__`` is light (it imports no
simulator) and defines ``IDS = {env_id: (entry_point, default_kwargs)}``. The simulator is only
imported by ``gym.make``; a missing simulator then fails there with a message naming the extra.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

BENCHMARK_PACKAGES = ("panda", "calvin", "metaworld", "libero", "behavior")


def _benchmark_packages():
    for name in BENCHMARK_PACKAGES:
        try:
            yield importlib.import_module(f"vla_gym.envs.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"vla_gym.envs.{name}":  # a real import error inside the package
                raise


def registered_ids() -> list[str]:
    """All IDs vla_gym registers, in benchmark order."""
    return [env_id for package in _benchmark_packages() for env_id in getattr(package, "IDS", {})]


def _make_vec_for(env_id: str, **kwargs: Any):
    """``gym.make_vec(id, n, vectorization_mode="vector_entry_point")`` for one vla_gym ID."""
    from vla_gym.vector import make_vec_entry_point

    return make_vec_entry_point(env_id=env_id, **kwargs)


def construct(entry_point: str, **kwargs: Any) -> gym.Env:
    """Build the env class named by ``entry_point`` (``"module:Class"``).

    Registered in the class's place so that ``gym.make`` hands ``render_mode`` to the env as
    given: handed the class, Gymnasium reads its render modes and turns ``"human"`` into
    ``"rgb_array"`` under a pygame window, whose ``close()`` ends the headless GL context of
    every later env in the process. The env itself refuses modes it does not render.
    """
    return load_env_creator(entry_point)(**kwargs)


def register_all() -> None:
    for package in _benchmark_packages():
        for env_id, (entry_point, kwargs) in getattr(package, "IDS", {}).items():
            if env_id in gym.registry:
                continue
            gym.register(
                id=env_id,
                entry_point=functools.partial(construct, entry_point),
                kwargs=dict(kwargs),
                # The env enforces its own step limit (a chunk must stop at truncation) and
                # validates actions itself: no TimeLimit and no passive checker on top.
                max_episode_steps=None,
                disable_env_checker=True,
                # Gymnasium hands a vector entry point kwargs but not the ID: bind it here
                # (a partial of a module-level function, so specs still pickle).
                vector_entry_point=functools.partial(_make_vec_for, env_id),
            )
