"""Benchmark evaluation protocols behind one policy contract and one result type.

    import vla_gym.eval

    protocol = vla_gym.eval.protocol_for("VLA/MetaWorld-ML45-Test-v0")  # metaworld/ML45-test
    result = protocol.run("expert", episodes=5, num_envs=2)
    print(result.report, result.metrics["success"])

A policy is any object with ``act(obs, infos) -> actions`` (batched observations and one info
dict per env in, one action or action chunk per env out) and ``episode_done(env_index)``
(:class:`Policy`), a factory building one from the protocol's vector env, or a built-in name
(``"expert"``, ``"random"``, ``"zero"``). Every protocol returns an :class:`EvalResult`. From the
shell: ``python -m vla_gym.eval --env-id ID --policy expert`` or the benchmark modules
(``python -m vla_gym.eval.calvin|metaworld|libero --help``), env kwargs as
``env.kwargs.KEY=VALUE`` or ``--env-kwargs '{KEY: VALUE}'`` (:mod:`vla_gym.cli`).
"""

from vla_gym.eval.envs import make_vector_env
from vla_gym.eval.policy import (
    ExpertPolicy,
    Policy,
    PolicyFactory,
    PolicySpec,
    RandomPolicy,
    ZeroPolicy,
    env_info,
    split_infos,
)
from vla_gym.eval.protocols import Protocol, generic_protocol, protocol_for, protocols, run
from vla_gym.eval.result import EvalResult

__all__ = [
    "EvalResult",
    "ExpertPolicy",
    "Policy",
    "PolicyFactory",
    "PolicySpec",
    "Protocol",
    "RandomPolicy",
    "ZeroPolicy",
    "env_info",
    "generic_protocol",
    "make_vector_env",
    "protocol_for",
    "protocols",
    "run",
    "split_infos",
]
