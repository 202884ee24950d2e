"""`StepBuffers`: the fixed-size arrays of a vector env (observations, actions, rewards, dones).

They are allocated in one block of memory: private memory for the in-process backend, a shared
memory segment for subprocess workers, so a worker writes its envs' rows in place and the parent
reads them without any copy through a pipe.
"""

from __future__ import annotations

import sys
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


class RecycledCopies:
    """Per-step copies of some arrays, reusing last step's copies once nobody else holds them.

    A fresh multi-100-KB array per image and step costs more in page faults than the copy
    itself (glibc hands large blocks back to the OS on free). An array whose only references are
    ours can be overwritten safely: any view, tensor or container the caller kept counts.
    """

    def __init__(self, count: int) -> None:
        self._copies: list[np.ndarray | None] = [None] * count
        self._sole_refcount = 0  # refcount of a copy only we hold, measured, not assumed

    def __call__(self, sources: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for k, source in enumerate(sources):
            copy = self._copies[k]
            if copy is not None and sys.getrefcount(copy) <= self._sole_refcount:
                np.copyto(copy, source)
            else:
                copy = source.copy()
                self._copies[k] = copy
                self._sole_refcount = sys.getrefcount(copy)  # same references as the check
            out.append(copy)
        return out
