"""Typed settings from plain mappings: dataclasses built from YAML/CLI dicts, values coerced.

The bottom layer of the trainer's configuration: it imports nothing of the trainer, so the
config loader, the algorithms and the policies can all use it without importing each other.

* :func:`build` makes a dataclass from a mapping: unknown keys, wrong types and the dataclass's
  own ``__post_init__`` checks all become a :class:`ConfigError` naming the key.
* A dataclass with a ``PRESETS`` class attribute and a ``preset`` field starts from
  ``PRESETS[preset]``; the mapping's other keys override it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A config that cannot be run, with the key and the reason."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def build(cls: type, raw: Any, prefix: str = "") -> Any:
    """A ``cls`` dataclass from a mapping; ``prefix`` (e.g. ``"algorithm."``) names its keys."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    raw = _with_preset(cls, raw, prefix)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + unknown[0]!r} (known under {prefix.rstrip('.') or 'top'}: "
            f"{', '.join(sorted(known))})"
        )
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
            values[key] = build(hint, value, prefix=f"{prefix}{key}.")
        else:
            values[key] = coerce(value, hint, f"{prefix}{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # the dataclass's own __post_init__ checks
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def _with_preset(cls: type, raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    presets = getattr(cls, "PRESETS", None)
    if presets is None:
        return raw
    default = next(f.default for f in dataclasses.fields(cls) if f.name == "preset")
    name = raw.get("preset", default)
    if name not in presets:
        raise ConfigError(f"{prefix}preset: unknown preset {name!r} (known: {', '.join(presets)})")
    return {**presets[name], **raw}


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert one value against a type hint: bool, int, float, str, list, tuple, dict,
    ``X | None``, or a dataclass (a value of that type passes; anything else is left as is)."""
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:
            return coerce(value, options[0], key)
        return value
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
        if isinstance(value, (int, float)):
            return str(value)
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [value]
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
        if value is None:
            return {}
    else:
        return value
    raise ConfigError(f"{key} must be a {getattr(origin, '__name__', origin)}, got {value!r}")
