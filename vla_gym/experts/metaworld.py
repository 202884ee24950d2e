"""Scripted Meta-World experts: ``metaworld.policies`` driven through the vla_gym API.

Meta-World's hand-written policies act on the full 39-D observation (object and goal positions),
which the VLA observation does not contain; the env reports it as ``info["native_obs"]`` along
with ``info["task"]``. The expert picks the policy of the current episode's task from ``info``,
so one expert serves single-task IDs, MT50/ML45 cycles and one slot of a vector env.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vla_gym.core.deps import require
from vla_gym.envs.metaworld.tasks import VERSION_SUFFIX, canonical_task
from vla_gym.experts import repeat_to_chunk


class MetaWorldExpert:
    """``act(obs, info)`` -> the task policy's action for ``info["native_obs"]``.

    ``task`` pins one task (an error is raised if the env reports another); by default the task
    is read from ``info["task"]`` every step.
    """

    def __init__(self, task: str | None = None, action_chunk: int = 1) -> None:
        policies = require("metaworld.policies", extra="metaworld", what="the Meta-World expert")
        self._policy_classes = policies.ENV_POLICY_MAP
        self.task = canonical_task(task) if task is not None else None
        self.action_chunk = int(action_chunk)
        self._policies: dict[str, Any] = {}

    def reset(self) -> None:
        """Meta-World's policies are stateless; nothing to clear."""

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        if "native_obs" not in info or "task" not in info:
            raise KeyError(
                "the Meta-World expert needs info['native_obs'] and info['task'] "
                "(reported by VLA/MetaWorld-* envs on reset and step)"
            )
        task = canonical_task(str(info["task"]))
        if self.task is not None and task != self.task:
            raise ValueError(f"expert for task {self.task!r} got an episode of task {task!r}")
        with warnings.catch_warnings():  # large gains are intended: the action is clipped
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = self._policy(task).get_action(np.asarray(info["native_obs"], np.float64))
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        return repeat_to_chunk(action, self.action_chunk)

    def _policy(self, task: str) -> Any:
        if task not in self._policies:
            self._policies[task] = self._policy_classes[task + VERSION_SUFFIX]()
        return self._policies[task]


def make_expert(
    env_id: str, task: str | None = None, action_chunk: int = 1, **kwargs: Any
) -> MetaWorldExpert:
    if kwargs:
        raise TypeError(f"unexpected arguments for the Meta-World expert: {sorted(kwargs)}")
    return MetaWorldExpert(task=task, action_chunk=action_chunk)
