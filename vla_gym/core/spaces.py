"""The observation and action spaces every vla_gym environment shares."""

from __future__ import annotations

import string
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces

# Gymnasium's default Text charset is alphanumeric only; instructions are real sentences.
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
INSTRUCTION_MAX_LENGTH = 512


def instruction_space() -> spaces.Text:
    """A Text space that admits natural-language sentences (spaces, punctuation, capitals)."""
    return spaces.Text(max_length=INSTRUCTION_MAX_LENGTH, min_length=0, charset=INSTRUCTION_CHARSET)


def image_space(height: int, width: int) -> spaces.Box:
    return spaces.Box(0, 255, (int(height), int(width), 3), dtype=np.uint8)


def vla_observation_space(cameras: Mapping[str, tuple[int, int]], state_dim: int) -> spaces.Dict:
    """`{"images": {camera: HxWx3 uint8}, "state": (D,) float32, "instruction": Text}`."""
    return spaces.Dict(
        {
            "images": spaces.Dict({name: image_space(*hw) for name, hw in cameras.items()}),
            "state": spaces.Box(-np.inf, np.inf, (state_dim,), dtype=np.float32),
            "instruction": instruction_space(),
        }
    )


def flat_observation_space(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)


def chunked_action_space(action_dim: int, action_chunk: int) -> spaces.Box:
    """`Box(-1, 1, (A,))` for a chunk of one, `Box(-1, 1, (k, A))` otherwise."""
    if int(action_chunk) < 1:
        raise ValueError(f"action_chunk must be a positive integer, got {action_chunk!r}")
    shape = (action_dim,) if action_chunk == 1 else (int(action_chunk), action_dim)
    return spaces.Box(-1.0, 1.0, shape, dtype=np.float32)
