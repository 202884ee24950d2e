"""Shared core: spaces, the base env, rendering settings and dependency checks."""

from vla_gym.core.base import VLAEnv, side_by_side
from vla_gym.core.deps import MissingDependencyError, require
from vla_gym.core.rendering import configure_headless_gl, gpu_available, resolve_render_quality
from vla_gym.core.spaces import (
    INSTRUCTION_CHARSET,
    chunked_action_space,
    flat_observation_space,
    instruction_space,
    vla_observation_space,
)

__all__ = [
    "INSTRUCTION_CHARSET",
    "MissingDependencyError",
    "VLAEnv",
    "chunked_action_space",
    "configure_headless_gl",
    "flat_observation_space",
    "gpu_available",
    "instruction_space",
    "require",
    "resolve_render_quality",
    "side_by_side",
    "vla_observation_space",
]
