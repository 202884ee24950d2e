"""How an observation or action space maps onto fixed-size arrays (and strings).

A (nested ``Dict``/``Tuple``) space is split into leaves: every fixed-shape leaf (``Box``,
``Discrete``, ``MultiDiscrete``, ``MultiBinary``) gets one ``(num_envs, *shape)`` array, which may
live in shared memory; ``Text`` leaves (the instruction) are kept as strings on the side, since
they rarely change and have no fixed size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ALIGNMENT = 64  # bytes; keeps every array cache-line aligned inside one shared buffer

Path = tuple[Any, ...]


@dataclass(frozen=True)
class ArrayLeaf:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype

    def nbytes(self, num_envs: int) -> int:
        return int(num_envs * int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


class SpaceLayout:
    """The array leaves and text leaves of one (single-env) space, in a fixed order."""

    def __init__(self, space: spaces.Space, name: str = "observation") -> None:
        self.space = space
        self.name = name
        self.array_leaves: list[ArrayLeaf] = []
        self.text_paths: list[Path] = []
        self._walk(space, ())

    def _walk(self, space: spaces.Space, path: Path) -> None:
        if isinstance(space, spaces.Dict):
            for key, sub in space.spaces.items():
                self._walk(sub, (*path, key))
        elif isinstance(space, spaces.Tuple):
            for index, sub in enumerate(space.spaces):
                self._walk(sub, (*path, index))
        elif isinstance(space, ARRAY_SPACES):
            self.array_leaves.append(ArrayLeaf(path, tuple(space.shape), np.dtype(space.dtype)))
        elif isinstance(space, spaces.Text):
            self.text_paths.append(path)
        else:
            where = "/".join(map(str, path)) or "<root>"
            raise TypeError(
                f"vla_gym.vector cannot batch the {self.name} space {type(space).__name__} at "
                f"{where!r}; supported: Box, Discrete, MultiDiscrete, MultiBinary, Text, "
                "and Dict/Tuple of those"
            )

    # ------------------------------------------------------------ memory
    def nbytes(self, num_envs: int) -> int:
        return sum(_aligned(leaf.nbytes(num_envs)) for leaf in self.array_leaves)

    def arrays_in(self, buffer: memoryview | None, num_envs: int, offset: int = 0):
        """One ``(num_envs, *shape)`` array per leaf, placed in ``buffer`` from ``offset``
        (fresh zeroed memory when ``buffer`` is None)."""
        arrays = []
        for leaf in self.array_leaves:
            shape = (num_envs, *leaf.shape)
            if buffer is None:
                arrays.append(np.zeros(shape, dtype=leaf.dtype))
            else:
                arrays.append(np.ndarray(shape, dtype=leaf.dtype, buffer=buffer, offset=offset))
            offset += _aligned(leaf.nbytes(num_envs))
        return arrays

    # ------------------------------------------------------------ one env
    @staticmethod
    def _get(value: Any, path: Path) -> Any:
        for key in path:
            value = value[key]
        return value

    def write(self, arrays: Sequence[np.ndarray], row: int, value: Any) -> tuple[str, ...]:
        """Copy one env's value into row ``row`` of ``arrays``; return its text leaves."""
        for leaf, array in zip(self.array_leaves, arrays, strict=True):
            array[row] = self._get(value, leaf.path)
        return tuple(str(self._get(value, path)) for path in self.text_paths)

    def write_rows(self, arrays: Sequence[np.ndarray], rows: np.ndarray, batched: Any) -> None:
        """Copy a batch for envs ``rows`` (e.g. actions) into those rows of ``arrays``."""
        for leaf, array in zip(self.array_leaves, arrays, strict=True):
            value = np.asarray(self._get(batched, leaf.path))
            expected = (len(rows), *leaf.shape)
            if value.shape != expected:
                where = "/".join(map(str, leaf.path))
                where = f" at {where!r}" if where else ""
                raise ValueError(
                    f"{self.name}s for {len(rows)} envs must have shape {expected}{where}, "
                    f"got {value.shape}"
                )
            array[rows] = value

    def read(self, arrays: Sequence[np.ndarray], row: int, texts: Sequence[str] = ()) -> Any:
        """One env's value (copied out of row ``row``), structured like the space."""
        leaves = iter([np.array(array[row]) for array in arrays])
        text_iter = iter(texts)

        def build(space: spaces.Space) -> Any:
            if isinstance(space, spaces.Dict):
                return {key: build(sub) for key, sub in space.spaces.items()}
            if isinstance(space, spaces.Tuple):
                return tuple(build(sub) for sub in space.spaces)
            if isinstance(space, spaces.Text):
                return next(text_iter)
            leaf = next(leaves)
            return leaf[()] if isinstance(space, spaces.Discrete) else leaf

        return build(self.space)

    # ------------------------------------------------------------ batches
    def batch(
        self,
        arrays: Sequence[np.ndarray],
        texts: Sequence[tuple[str, ...]],
        rows: np.ndarray | None = None,
        copy: bool = True,
    ) -> Any:
        """The batched value: arrays (all rows, or ``rows``) and one string per env per text leaf.

        ``texts[i]`` holds the text leaves of env ``i``. Without ``rows`` and ``copy=False`` the
        arrays are views of ``arrays`` (valid until they are next written).
        """
        if rows is None:
            leaves = iter([np.array(a) if copy else a for a in arrays])
            env_texts = list(texts)
        else:
            leaves = iter([a[rows] for a in arrays])  # fancy indexing copies
            env_texts = [texts[i] for i in rows]
        text_index = iter(range(len(self.text_paths)))

        def build(space: spaces.Space) -> Any:
            if isinstance(space, spaces.Dict):
                return {key: build(sub) for key, sub in space.spaces.items()}
            if isinstance(space, spaces.Tuple):
                return tuple(build(sub) for sub in space.spaces)
            if isinstance(space, spaces.Text):
                k = next(text_index)
                return tuple(t[k] for t in env_texts)
            return next(leaves)

        return build(self.space)

    def split(self, batched: Any, num_envs: int) -> list[Any]:
        """The per-env values of a batched value (for spaces with text leaves too)."""
        out = []
        for i in range(num_envs):

            def pick(space: spaces.Space, value: Any, i: int = i) -> Any:
                if isinstance(space, spaces.Dict):
                    return {key: pick(sub, value[key]) for key, sub in space.spaces.items()}
                if isinstance(space, spaces.Tuple):
                    return tuple(pick(sub, v) for sub, v in zip(space.spaces, value, strict=True))
                return value[i]

            out.append(pick(self.space, batched))
        return out
