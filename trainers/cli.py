"""The trainer's commands on top of :mod:`vla_gym.cli`'s env-kwargs idiom.

``trainers train``, ``sft`` and ``eval`` read ``env.kwargs.KEY=VALUE`` as config overrides
(beside any other ``dotted.key=value``) and ``--env-kwargs`` through :func:`mapping_overrides`;
``trainers collect`` also takes ``expert.kwargs.KEY=VALUE``; ``trainers.sb3`` takes the env ones.
"""

from __future__ import annotations

import json
from typing import Any

from vla_gym.cli import ENV_KWARGS


def mapping_overrides(mapping: dict[str, Any], prefix: str = ENV_KWARGS) -> list[str]:
    """``{"image_size": 64}`` -> ``["env.kwargs.image_size=64"]`` (config override syntax)."""
    return [f"{prefix}.{key}={json.dumps(value)}" for key, value in mapping.items()]
