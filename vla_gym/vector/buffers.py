"""`StepBuffers`: the fixed-size arrays of a vector env (observations, actions, rewards, dones).

They are allocated in one block of memory: private memory for the in-process backend, a shared
memory segment for subprocess workers, so a worker writes its envs' rows in place and the parent
reads them without any copy through a pipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_gym.vector.layout import ArrayLeaf, SpaceLayout, _aligned

_FLAGS = (
    ArrayLeaf(("rewards",), (), np.dtype(np.float64)),
    ArrayLeaf(("terminations",), (), np.dtype(np.bool_)),
    ArrayLeaf(("truncations",), (), np.dtype(np.bool_)),
)


@dataclass
class StepBuffers:
    obs: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    @staticmethod
    def nbytes(obs_layout: SpaceLayout, act_layout: SpaceLayout, num_envs: int) -> int:
        flags = sum(_aligned(leaf.nbytes(num_envs)) for leaf in _FLAGS)
        return obs_layout.nbytes(num_envs) + act_layout.nbytes(num_envs) + flags

    @classmethod
    def allocate(
        cls,
        obs_layout: SpaceLayout,
        act_layout: SpaceLayout,
        num_envs: int,
        memory: memoryview | None = None,
    ) -> StepBuffers:
        """Arrays laid out in ``memory`` (at least :meth:`nbytes` long) or in fresh memory."""
        offset = 0
        obs = obs_layout.arrays_in(memory, num_envs, offset)
        offset += obs_layout.nbytes(num_envs)
        actions = act_layout.arrays_in(memory, num_envs, offset)
        offset += act_layout.nbytes(num_envs)
        flags = []
        for leaf in _FLAGS:
            if memory is None:
                flags.append(np.zeros(num_envs, dtype=leaf.dtype))
            else:
                flags.append(np.ndarray((num_envs,), leaf.dtype, buffer=memory, offset=offset))
            offset += _aligned(leaf.nbytes(num_envs))
        return cls(obs, actions, *flags)

    def release(self) -> None:
        """Drop every view so the underlying shared memory can be unmapped."""
        self.obs, self.actions = [], []
        self.rewards = self.terminations = self.truncations = np.zeros(0)
