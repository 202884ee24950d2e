"""`StepBuffers`: the fixed-size arrays of a vector env (observations, actions, rewards, dones).

They are allocated in one block of memory: private memory for the in-process backend, a shared
memory segment for subprocess workers, so a worker writes its envs' rows in place and the parent
reads them without any copy through a pipe.

Observations have several *slots* (each a full set of ``(num_envs, ...)`` arrays). The vector
env hands a slot's arrays to the caller as the observation batch and makes the next step write
into a slot the caller no longer holds, so returned observations are never overwritten and
never copied (see :func:`slot_is_free`).
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
    obs_slots: list[list[np.ndarray]]
    actions: list[np.ndarray]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    @staticmethod
    def nbytes(
        obs_layout: SpaceLayout, act_layout: SpaceLayout, num_envs: int, num_slots: int = 1
    ) -> int:
        flags = sum(_aligned(leaf.nbytes(num_envs)) for leaf in _FLAGS)
        obs = num_slots * obs_layout.nbytes(num_envs)
        return obs + act_layout.nbytes(num_envs) + flags

    @classmethod
    def allocate(
        cls,
        obs_layout: SpaceLayout,
        act_layout: SpaceLayout,
        num_envs: int,
        num_slots: int = 1,
        memory: memoryview | None = None,
    ) -> StepBuffers:
        """Arrays laid out in ``memory`` (at least :meth:`nbytes` long) or in fresh memory."""
        offset = 0
        slots = []
        for _ in range(num_slots):
            slots.append(obs_layout.arrays_in(memory, num_envs, offset))
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
        return cls(slots, actions, *flags)

    def release(self) -> None:
        """Drop every view so the underlying shared memory can be unmapped."""
        self.obs_slots, self.actions = [], []
        self.rewards = self.terminations = self.truncations = np.zeros(0)


def _refcount(arrays: list[np.ndarray], k: int) -> int:
    array = arrays[k]
    return sys.getrefcount(array)


# The reference count of an array referenced only by its slot list, measured (through the same
# code path as the checks below) rather than assumed: it differs between Python versions.
_SOLE_REFCOUNT = _refcount([np.zeros(1)], 0)


def slot_is_free(arrays: list[np.ndarray]) -> bool:
    """No one but the slot list holds these arrays (nor a view, tensor or container of them)."""
    return all(_refcount(arrays, k) <= _SOLE_REFCOUNT for k in range(len(arrays)))
