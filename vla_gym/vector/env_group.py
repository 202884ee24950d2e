"""`EnvGroup`: the envs one worker hosts, with the autoreset rules, writing into shared buffers.

Every backend runs its envs through this class (in the caller's process, in a subprocess or in a
Ray actor), so the three behave identically by construction. Observations, rewards and done flags
are written in place into :class:`StepBuffers` rows; only what has no fixed size (infos, changed
instructions, final observations) is returned.
"""

from __future__ import annotations

import contextlib
import copy
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from vla_gym.vector.buffers import StepBuffers
from vla_gym.vector.errors import EnvError
from vla_gym.vector.layout import SpaceLayout


@dataclass
class GroupResult:
    """What a step or reset of some of a group's envs returns besides the buffer contents."""

    local_ids: list[int]
    infos: list[dict[str, Any]]  # aligned with local_ids
    texts: dict[int, tuple[str, ...]] = field(default_factory=dict)  # only the changed ones
    restarted: list[int] = field(default_factory=list)  # local ids reset by a worker restart

    @property
    def is_plain(self) -> bool:
        """Nothing to send but the buffer contents (the common case for a step)."""
        return not self.texts and not self.restarted and not any(self.infos)


def env_error(env_index: int, exc: BaseException) -> EnvError:
    summary = f"{type(exc).__name__}: {exc}"
    return EnvError(env_index, summary, "".join(traceback.format_exception(exc)))


class EnvGroup:
    """Envs ``first_index .. first_index + len(env_fns) - 1`` of a vector env."""

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        first_index: int,
        autoreset_mode: AutoresetMode,
    ) -> None:
        self.first_index = first_index
        self.autoreset_mode = autoreset_mode
        self.envs: list[gym.Env] = []
        for local, env_fn in enumerate(env_fns):
            self.envs.append(self._guarded(local, env_fn))
        self._check_same_spaces()
        self._needs_reset = np.zeros(len(self.envs), dtype=bool)
        self._texts: list[tuple[str, ...] | None] = [None] * len(self.envs)

    def _check_same_spaces(self) -> None:
        first = self.envs[0]
        for local, env in enumerate(self.envs[1:], start=1):
            for name in ("observation_space", "action_space"):
                if getattr(env, name) != getattr(first, name):
                    raise ValueError(
                        f"env {self.first_index + local} has {name} {getattr(env, name)}, "
                        f"but env {self.first_index} has {getattr(first, name)}; "
                        "a vector env needs the same spaces in every env"
                    )

    def describe(self) -> dict[str, Any]:
        """Spaces and metadata of the first env (the vector env is built from these)."""
        env = self.envs[0]
        return {
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "metadata": dict(env.metadata),
            "render_mode": env.render_mode,
        }

    def bind(
        self,
        obs_layout: SpaceLayout,
        act_layout: SpaceLayout,
        buffers: StepBuffers,
        row_offset: int | None = None,
    ) -> None:
        """Where to write: env ``local`` owns row ``row_offset + local`` of ``buffers`` (by
        default its global index, i.e. buffers shared by the whole vector env)."""
        self.obs_layout = obs_layout
        self.act_layout = act_layout
        self.buffers = buffers
        self.row_offset = self.first_index if row_offset is None else row_offset

    def _guarded(self, local: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise env_error(self.first_index + local, exc) from exc

    def _write_obs(self, local: int, obs: Any, result: GroupResult, slot: int) -> None:
        row = self.row_offset + local
        texts = self.obs_layout.write(self.buffers.obs_slots[slot], row, obs)
        if texts and texts != self._texts[local]:
            self._texts[local] = texts
            result.texts[local] = texts

    def reset(
        self,
        local_ids: Sequence[int],
        seeds: Sequence[int | None],
        options: dict | None,
        slot: int = 0,
    ) -> GroupResult:
        """Reset ``local_ids``, writing their observations into observation slot ``slot``."""
        result = GroupResult(list(local_ids), [])
        for local, seed in zip(local_ids, seeds, strict=True):
            env = self.envs[local]
            obs, info = self._guarded(local, env.reset, seed=seed, options=options)
            row = self.row_offset + local
            self.buffers.rewards[row] = 0.0
            self.buffers.terminations[row] = False
            self.buffers.truncations[row] = False
            self._needs_reset[local] = False
            self._write_obs(local, obs, result, slot)
            result.infos.append(info)
        return result

    def step(self, local_ids: Sequence[int], slot: int = 0) -> GroupResult:
        """Step ``local_ids`` with the actions in their rows of ``buffers.actions``; write their
        observations into observation slot ``slot``."""
        result = GroupResult(list(local_ids), [])
        buffers = self.buffers
        for local in local_ids:
            env = self.envs[local]
            row = self.row_offset + local
            if self._needs_reset[local] and self.autoreset_mode == AutoresetMode.NEXT_STEP:
                obs, info = self._guarded(local, env.reset)
                reward, terminated, truncated = 0.0, False, False
            elif self._needs_reset[local] and self.autoreset_mode == AutoresetMode.DISABLED:
                raise RuntimeError(
                    f"env {self.first_index + local} is done and autoreset_mode is DISABLED: "
                    "reset it with reset(options={'reset_mask': mask}) before stepping it again"
                )
            else:
                action = self.act_layout.read(buffers.actions, row)
                obs, reward, terminated, truncated, info = self._guarded(local, env.step, action)
                if self.autoreset_mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                    final = {"final_obs": copy.deepcopy(obs), "final_info": info}
                    obs, reset_info = self._guarded(local, env.reset)
                    info = {**final, **reset_info}
            buffers.rewards[row] = reward
            buffers.terminations[row] = terminated
            buffers.truncations[row] = truncated
            self._needs_reset[local] = (terminated or truncated) and (
                self.autoreset_mode != AutoresetMode.SAME_STEP
            )
            self._write_obs(local, obs, result, slot)
            result.infos.append(info)
        return result

    def restart_reset(self, slot: int) -> GroupResult:
        """Reset every env of a freshly (re)started group; they count as truncated (their
        previous episode was cut short)."""
        every = list(range(len(self.envs)))
        return self.mark_restarted(self.reset(every, [None] * len(every), None, slot))

    def mark_restarted(self, result: GroupResult) -> GroupResult:
        for local in result.local_ids:
            self.buffers.truncations[self.row_offset + local] = True
            if self.autoreset_mode != AutoresetMode.SAME_STEP:
                self._needs_reset[local] = True
        result.restarted = list(result.local_ids)
        return result

    # ------------------------------------------------------------ attributes
    def call(self, name: str, args: tuple, kwargs: dict) -> list[Any]:
        results = []
        for local, env in enumerate(self.envs):
            attr = self._guarded(local, env.get_wrapper_attr, name)
            results.append(self._guarded(local, attr, *args, **kwargs) if callable(attr) else attr)
        return results

    def get_attr(self, name: str) -> list[Any]:
        return [self._guarded(i, env.get_wrapper_attr, name) for i, env in enumerate(self.envs)]

    def set_attr(self, name: str, values: Sequence[Any]) -> None:
        for local, (env, value) in enumerate(zip(self.envs, values, strict=True)):
            self._guarded(local, env.set_wrapper_attr, name, value)

    def close(self) -> None:
        for env in self.envs:
            with contextlib.suppress(Exception):  # must not mask the error that led here
                env.close()
        self.envs = []
