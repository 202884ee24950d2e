"""Scripted experts with privileged information, for demonstrations and for validating envs.

``make_expert(env_id, **kwargs)`` returns an object with ``reset()`` and
``act(obs, info) -> action`` (an action of the env's action space). Experts read privileged
state from ``info`` (each adapter documents what it puts there), so they also work on one
env's slice of a vector env's batch.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

# Env-ID prefix -> module defining ``make_expert(env_id, **kwargs)``.
EXPERT_MODULES = {
    "VLA/PandaPickCube": "vla_gym.experts.panda",
    "VLA/CALVIN": "vla_gym.experts.calvin",
    "VLA/MetaWorld": "vla_gym.experts.metaworld",
    "VLA/LIBERO": "vla_gym.experts.libero",
}


class Expert(Protocol):
    def reset(self) -> None: ...

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray: ...


def make_expert(env_id: str, **kwargs: Any) -> Expert:
    """The scripted expert for ``env_id`` (e.g. ``make_expert("VLA/PandaPickCube-v0")``)."""
    env_id = env_id.removeprefix("vla_gym:")
    for prefix, module in EXPERT_MODULES.items():
        if env_id.startswith(prefix):
            return importlib.import_module(module).make_expert(env_id, **kwargs)
    raise ValueError(
        f"no scripted expert for {env_id!r}; experts exist for: {', '.join(EXPERT_MODULES)}"
    )


def repeat_to_chunk(action: np.ndarray, action_chunk: int) -> np.ndarray:
    """Shape one native action for an env with ``action_chunk`` (closed-loop repeated)."""
    action = np.asarray(action, dtype=np.float32)
    return action if action_chunk == 1 else np.tile(action, (action_chunk, 1))
