"""Checks for constructor arguments, shared by every env.

Each check returns the value in its canonical type or raises ``ValueError`` naming the argument,
its valid range and the value given, so a bad argument fails at ``gym.make`` with a message
that says what to change (rather than being rounded, coerced, or failing deep inside a
simulator). ``bool`` is refused where a number is expected and vice versa: ``True`` as a step
count or ``"no"`` as a flag is a mistake, not a value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

MAX_IMAGE_SIZE = 4096  # pixels per side; larger frames are a typo, not a camera


def _bounds(low: float | None, high: float | None, *, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "finite"


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``None``: unbounded)."""
    kind = "an integer " + _bounds(low, high)
    if isinstance(value, bool | np.bool_) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def optional_integer(
    name: str, value: Any, low: int | None = None, high: int | None = None
) -> int | None:
    """``None`` (the default applies) or an integer in ``[low, high]``."""
    return None if value is None else integer(name, value, low, high)


def number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> float:
    """A finite real number in ``[low, high]``, or ``(low, high]`` with ``low_open``."""
    kind = "a number " + _bounds(low, high, low_open=low_open)
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    number = float(value)
    below = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or below or (high is not None and number > high):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return number


def flag(name: str, value: Any) -> bool:
    """``True`` or ``False`` (a string such as ``"no"`` is truthy: refused)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """One of ``choices``."""
    try:
        known = value in choices
    except TypeError:  # unhashable, e.g. a list where a string belongs
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {sorted(choices, key=repr)}, got {value!r}")
    return value


def image_size(name: str, value: Any) -> tuple[int, int]:
    """``(height, width)`` from a side length or a pair, each in ``[1, MAX_IMAGE_SIZE]``."""
    pair = value if isinstance(value, Sequence) and not isinstance(value, str) else None
    sides = (value, value) if pair is None else tuple(pair)
    kind = f"an integer in [1, {MAX_IMAGE_SIZE}] or a (height, width) pair of them"
    if len(sides) != 2:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    try:
        return tuple(integer(name, side, 1, MAX_IMAGE_SIZE) for side in sides)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None


def names(name: str, value: Any, known: Sequence[str]) -> list[str]:
    """A non-empty list of distinct names from ``known`` (a single string is one name)."""
    listed = [value] if isinstance(value, str) else value
    kind = f"distinct names from {list(known)} (at least one)"
    if isinstance(listed, str) or not isinstance(listed, Sequence) or not listed:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    listed = list(listed)
    bad = [item for item in listed if not isinstance(item, str) or item not in known]
    if bad or len(set(listed)) != len(listed):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return listed


def render_mode(value: Any, supported: Sequence[str]) -> str | None:
    """``None`` or a mode the env renders itself (Gymnasium's ``"human"`` substitute, a
    window over ``rgb_array``, is not offered: its ``close()`` ends the GL context of every
    headless renderer in the process)."""
    return choice("render_mode", value, (None, *supported))


def optional_path(name: str, value: Any) -> str | os.PathLike | None:
    """``None`` or a filesystem path (whether it exists is the env's to check)."""
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ValueError(f"{name} must be None or a filesystem path, got {value!r}")
    return value
