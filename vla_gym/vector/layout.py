"""How an observation or action space maps onto fixed-size arrays (and strings).

A (nested ``Dict``/``Tuple``) space is split into leaves: every fixed-shape leaf (``Box``,
``Discrete``, ``MultiDiscrete``, ``MultiBinary``) gets one ``(num_envs, *shape)`` array, which may
live in shared memory; ``Text`` leaves (the instruction) are kept as strings on the side, since
they rarely change and have no fixed size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    scalar: bool = False  # Discrete: one env's value is a Python/NumPy integer, not an array

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
        self._plain_array = isinstance(
            space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)
        )

    def _walk(self, space: spaces.Space, path: Path) -> None:
        if isinstance(space, spaces.Dict):
            for key, sub in space.spaces.items():
                self._walk(sub, (*path, key))
        elif isinstance(space, spaces.Tuple):
            for index, sub in enumerate(space.spaces):
                self._walk(sub, (*path, index))
        elif isinstance(space, ARRAY_SPACES):
            scalar = isinstance(space, spaces.Discrete)
            leaf = ArrayLeaf(path, tuple(space.shape), np.dtype(space.dtype), scalar)
            self.array_leaves.append(leaf)
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

    def write_rows(
        self, arrays: Sequence[np.ndarray], rows: np.ndarray | slice, batched: Any, ids: np.ndarray
    ) -> None:
        """Copy a batch for envs ``ids`` (e.g. actions) into ``rows`` of ``arrays``.

        Every leaf of every env is checked before anything is written (all or nothing): the
        shape, a numeric dtype, and finite values for float leaves. A finite value beyond the
        leaf's dtype (1e39 for float32) is clipped to the dtype's largest finite value rather
        than becoming inf; bounds are the env's to enforce.
        """
        values = [self._checked(leaf, batched, ids) for leaf in self.array_leaves]
        for array, value in zip(arrays, values, strict=True):
            array[rows] = value

    def _checked(self, leaf: ArrayLeaf, batched: Any, ids: np.ndarray) -> np.ndarray:
        where = "/".join(map(str, leaf.path))
        where = f" at {where!r}" if where else ""
        try:
            value = np.asarray(self._get(batched, leaf.path))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}s{where}: not a batch of arrays ({exc})") from None
        expected = (len(ids), *leaf.shape)
        if value.shape != expected:
            raise ValueError(
                f"{self.name}s for {len(ids)} envs must have shape {expected}{where}, "
                f"got {value.shape}"
            )
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{self.name}s{where} must be numeric, got dtype {value.dtype}")
        if value.dtype.kind == "f":
            finite = np.isfinite(value).reshape(len(ids), -1).all(axis=1)
            if not finite.all():
                raise ValueError(
                    f"{self.name}s of envs {ids[~finite].tolist()}{where} contain NaN or inf; "
                    "no env was stepped"
                )
            if leaf.dtype.kind == "f":
                limit = np.finfo(leaf.dtype).max
                value = np.clip(value, -limit, limit)
        return value

    def read(self, arrays: Sequence[np.ndarray], row: int, texts: Sequence[str] = ()) -> Any:
        """One env's value (copied out of row ``row``), structured like the space."""
        if self._plain_array:  # e.g. a Box action: no structure to rebuild
            return arrays[0][row].copy()
        leaves = [
            array[row] if leaf.scalar else array[row].copy()  # [row] of 1-D: a scalar copy
            for leaf, array in zip(self.array_leaves, arrays, strict=True)
        ]
        return _assemble(self.space, iter(leaves), iter(texts))

    # ------------------------------------------------------------ batches
    def batch(
        self,
        arrays: Sequence[np.ndarray],
        texts: Sequence[tuple[str, ...]],
        rows: np.ndarray | None = None,
    ) -> Any:
        """The batched value: ``arrays`` as they are (or their ``rows``, copied) and one string
        per env per text leaf (``texts[i]`` holds env ``i``'s text leaves)."""
        if rows is not None:
            arrays = [a[rows] for a in arrays]  # fancy indexing copies
            texts = [texts[i] for i in rows]
        per_leaf = [tuple(t[k] for t in texts) for k in range(len(self.text_paths))]
        return _assemble(self.space, iter(arrays), iter(per_leaf))


def _assemble(space: spaces.Space, leaves: Iterator[Any], texts: Iterator[Any]) -> Any:
    """Rebuild ``space``'s structure from its array leaves and text leaves, in walk order.

    (A plain function rather than a closure: a recursive closure is a reference cycle that
    would keep every observation it built alive until the garbage collector runs.)
    """
    if isinstance(space, spaces.Dict):
        return {key: _assemble(sub, leaves, texts) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_assemble(sub, leaves, texts) for sub in space.spaces)
    if isinstance(space, spaces.Text):
        return next(texts)
    return next(leaves)
