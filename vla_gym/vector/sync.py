"""`backend="sync"`: every env in the caller's process (debugging, single-core machines)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from vla_gym.vector.base import BatchedVectorEnv, WorkerHandle, observation_slots
from vla_gym.vector.buffers import StepBuffers
from vla_gym.vector.env_group import EnvGroup, GroupResult
from vla_gym.vector.errors import EnvError
from vla_gym.vector.layout import SpaceLayout


class InProcessWorker(WorkerHandle):
    """Runs an :class:`EnvGroup` right away; answers wait in a queue until fetched."""

    def __init__(
        self,
        index: int,
        first_index: int,
        env_fns: Sequence[Callable[[], gym.Env]],
        autoreset_mode: AutoresetMode,
    ) -> None:
        super().__init__(index, first_index, len(env_fns))
        self.env_fns = list(env_fns)
        self.autoreset_mode = autoreset_mode
        self.group = EnvGroup(self.env_fns, first_index, autoreset_mode)
        self._answers: list[GroupResult | EnvError] = []

    def bind(self, obs_layout: SpaceLayout, act_layout: SpaceLayout, buffers: StepBuffers) -> None:
        self._layouts = (obs_layout, act_layout, buffers)
        self.group.bind(obs_layout, act_layout, buffers)

    def _run(self, fn: Callable[..., GroupResult], *args: Any) -> None:
        try:
            self._answers.append(fn(*args))
        except EnvError as error:
            self._answers.append(error)

    def submit_step(self, local_ids: list[int], slot: int) -> None:
        self._run(self.group.step, local_ids, slot)

    def submit_reset(
        self, local_ids: list[int], seeds: list[int | None], options: Any, slot: int
    ) -> None:
        self._run(self.group.reset, local_ids, seeds, options, slot)

    def answer_ready(self, timeout: float) -> bool:
        return True  # answered when submitted

    def fetch(self) -> GroupResult:
        answer = self._answers.pop(0)
        if isinstance(answer, EnvError):
            raise answer
        return answer

    def request(self, method: str, *args: Any) -> Any:
        return getattr(self.group, method)(*args)

    def restart(self, slot: int) -> GroupResult:
        self.group.close()
        self._answers.clear()
        self.group = EnvGroup(self.env_fns, self.first_index, self.autoreset_mode)
        self.group.bind(*self._layouts)
        return self.group.restart_reset(slot)

    def kill(self) -> None:  # nothing runs concurrently in-process
        pass

    def close(self) -> None:
        self.group.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pid": os.getpid(), "backend": "sync"}


class SyncVectorEnv(BatchedVectorEnv):
    """All envs in this process, stepped one after another (same semantics as the workers)."""

    backend = "sync"

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        *,
        autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        step_timeout: float = 300.0,
        restart_on_failure: bool = False,
    ) -> None:
        super().__init__()
        worker = InProcessWorker(0, 0, env_fns, autoreset_mode)
        spec = worker.group.describe()
        obs_layout = SpaceLayout(spec["observation_space"], "observation")
        act_layout = SpaceLayout(spec["action_space"], "action")
        buffers = StepBuffers.allocate(
            obs_layout, act_layout, len(env_fns), observation_slots(copy)
        )
        worker.bind(obs_layout, act_layout, buffers)
        self._setup(
            workers=[worker],
            spec=spec,
            buffers=buffers,
            autoreset_mode=autoreset_mode,
            copy=copy,
            step_timeout=step_timeout,
            restart_on_failure=restart_on_failure,
        )

    @property
    def envs(self) -> list[gym.Env]:
        """The sub-environments (this backend only)."""
        return self.workers[0].group.envs

    def _wait(self, workers: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
        return workers  # answers are computed on submit
