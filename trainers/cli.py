"""One command-line idiom for env (and expert) kwargs in every command.

Positional ``env.kwargs.KEY=VALUE`` (VALUE parsed as YAML: ``64``, ``false``, ``[a, b]``) or one
``--env-kwargs '{KEY: VALUE, ...}'`` mapping (YAML or JSON). ``trainers train``, ``sft`` and
``eval`` read them as config overrides (any other ``dotted.key=value`` too); ``trainers collect``
also takes ``expert.kwargs.KEY=VALUE``; ``trainers.sb3`` takes the env ones.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

ENV_KWARGS = "env.kwargs"


def add_env_kwargs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-kwargs",
        default="",
        metavar="MAPPING",
        help="env kwargs as one YAML/JSON mapping, e.g. '{image_size: 64}' (the same as "
        "env.kwargs.image_size=64)",
    )


def parse_mapping(text: str, flag: str = "--env-kwargs") -> dict[str, Any]:
    """A ``{key: value}`` mapping from YAML/JSON text (empty text: no kwargs)."""
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SystemExit(f"{flag}: not YAML/JSON ({error})") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a mapping like '{{image_size: 64}}', got {text!r}")
    return value


def mapping_overrides(mapping: dict[str, Any], prefix: str = ENV_KWARGS) -> list[str]:
    """``{"image_size": 64}`` -> ``["env.kwargs.image_size=64"]`` (config override syntax)."""
    return [f"{prefix}.{key}={json.dumps(value)}" for key, value in mapping.items()]


def parse_kwargs(items: list[str], prefixes: tuple[str, ...] = (ENV_KWARGS,)) -> dict[str, dict]:
    """``PREFIX.KEY=VALUE`` items -> ``{PREFIX: {KEY: VALUE}}`` for each allowed prefix."""
    result: dict[str, dict] = {prefix: {} for prefix in prefixes}
    for item in items:
        key, sep, text = item.partition("=")
        prefix, _, name = key.rpartition(".")
        if not sep or prefix not in prefixes or not name:
            examples = " or ".join(f"{p}.KEY=VALUE" for p in prefixes)
            raise SystemExit(
                f"argument {item!r} must look like {examples} (e.g. {ENV_KWARGS}.image_size=64)"
            )
        result[prefix][name] = yaml.safe_load(text) if text else ""
    return result
