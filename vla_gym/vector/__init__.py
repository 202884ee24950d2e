"""The vector-env layer: ``make_vec`` over in-process, subprocess or Ray workers.

Observations are written in place into (shared) buffers, instructions travel only when they
change, failures name the env and carry its traceback, and an envpool-style ``send``/``recv``
API returns whichever envs finish first. See :func:`make_vec`.
"""

from vla_gym.vector.base import BatchedVectorEnv
from vla_gym.vector.errors import (
    EnvError,
    VectorEnvError,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
)
from vla_gym.vector.factory import make_vec, make_vec_entry_point, parse_autoreset_mode

__all__ = [
    "BatchedVectorEnv",
    "EnvError",
    "VectorEnvError",
    "WorkerDiedError",
    "WorkerError",
    "WorkerTimeoutError",
    "make_vec",
    "make_vec_entry_point",
    "parse_autoreset_mode",
]
