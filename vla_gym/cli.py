"""One command-line idiom for env kwargs, shared by every command of vla_gym and its trainer.

Positional ``env.kwargs.KEY=VALUE`` items (VALUE parsed as YAML: ``64``, ``false``, ``[a, b]``)
and/or one ``--env-kwargs '{KEY: VALUE, ...}'`` mapping (YAML or JSON); an item overrides the
same key of the mapping. Only the form is checked here: the env's constructor checks the keys and
values, so an unknown key or a bad value fails there with the env's own message.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import yaml

ENV_KWARGS = "env.kwargs"
KWARGS_FLAG = "--env-kwargs"


def add_env_kwargs_flag(parser: argparse.ArgumentParser) -> None:
    """``--env-kwargs MAPPING`` (into ``args.env_kwargs``)."""
    parser.add_argument(
        KWARGS_FLAG,
        default="",
        metavar="MAPPING",
        help="env kwargs as one YAML/JSON mapping, e.g. '{image_size: 64}' (the same as "
        f"{ENV_KWARGS}.image_size=64)",
    )


def add_env_kwargs_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env-kwargs MAPPING`` and positional ``env.kwargs.KEY=VALUE`` items (into
    ``args.kwargs``); :func:`env_kwargs_from_args` reads both."""
    add_env_kwargs_flag(parser)
    parser.add_argument(
        "kwargs",
        nargs="*",
        metavar=f"{ENV_KWARGS}.KEY=VALUE",
        help=f"one env kwarg, the value parsed as YAML, e.g. {ENV_KWARGS}.max_steps=100",
    )


def parse_mapping(text: str, flag: str = KWARGS_FLAG) -> dict[str, Any]:
    """A ``{key: value}`` mapping with string keys from YAML/JSON text (empty text: no kwargs)."""
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SystemExit(f"{flag}: not YAML/JSON ({error})") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a mapping like '{{image_size: 64}}', got {text!r}")
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise SystemExit(f"{flag}: keys must be kwarg names, got {bad} in {text!r}")
    return value


def parse_kwargs(
    items: list[str], prefixes: tuple[str, ...] = (ENV_KWARGS,)
) -> dict[str, dict[str, Any]]:
    """``PREFIX.KEY=VALUE`` items -> ``{PREFIX: {KEY: VALUE}}`` for each allowed prefix."""
    result: dict[str, dict[str, Any]] = {prefix: {} for prefix in prefixes}
    for item in items:
        key, sep, text = item.partition("=")
        prefix, _, name = key.rpartition(".")
        if not sep or prefix not in prefixes or not name:
            examples = " or ".join(f"{p}.KEY=VALUE" for p in prefixes)
            raise SystemExit(
                f"argument {item!r} must look like {examples} (e.g. {ENV_KWARGS}.image_size=64)"
            )
        try:
            result[prefix][name] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            raise SystemExit(f"argument {item!r}: the value is not YAML ({error})") from None
    return result


def env_kwargs_from_args(
    args: argparse.Namespace, shorthands: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The env kwargs of a command line built with :func:`add_env_kwargs_arguments`.

    ``shorthands`` maps a command's own flags to the env kwarg each sets (e.g.
    ``{"--image-size": "image_size"}``); a flag left at ``None`` sets nothing, and one naming a
    key the generic form also sets is refused rather than silently outvoted.
    """
    kwargs = {**parse_mapping(args.env_kwargs), **parse_kwargs(args.kwargs)[ENV_KWARGS]}
    for flag, key in (shorthands or {}).items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is None:
            continue
        if key in kwargs:
            raise SystemExit(f"{flag} is short for {ENV_KWARGS}.{key}; give one of them, not both")
        kwargs[key] = value
    return kwargs
