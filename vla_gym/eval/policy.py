"""The one policy contract every evaluation protocol drives, and the built-in policies.

A :class:`Policy` acts for all envs of a vector env at once: it receives the batched observation
and one info dict per env (the latest of each env: privileged state for scripted experts) and
returns one action, or one action chunk, per env. ``episode_done(i)`` tells it that env ``i``'s
episode ended, so per-env state (an expert's phase, a history) can be reset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Acts for every env of a vector env at once."""

    def act(self, obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``obs``: the vector env's batched observation; ``infos``: one dict per env.

        Returns ``(num_envs, *single_action_shape)``: an action (or action chunk) per env.
        """
        ...

    def episode_done(self, env_index: int) -> None:
        """Env ``env_index``'s episode ended; its next observation starts a new one."""
        ...


# What ``run(policy, ...)`` accepts: a Policy, a factory building one for the protocol's vector
# env (it knows the spaces and the number of envs), or the name of a built-in policy.
PolicyFactory = Callable[[gym.vector.VectorEnv], Policy]
PolicySpec = Policy | PolicyFactory | str


def env_info(infos: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Env ``index``'s entries of a vector env's batched ``infos`` (``_key`` masks honoured)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not mask[index]:
            continue
        out[key] = env_info(value, index) if isinstance(value, Mapping) else value[index]
    return out


def split_infos(infos: Mapping[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """A vector env's batched ``infos`` as one dict per env."""
    return [env_info(infos, index) for index in range(num_envs)]


class RandomPolicy:
    """Uniform actions from the vector env's action space (seeded)."""

    def __init__(self, action_space: gym.Space, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def act(self, obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.action_space.sample()

    def episode_done(self, env_index: int) -> None:
        pass


class ExpertPolicy:
    """One scripted expert (:func:`vla_gym.experts.make_expert`) per env, fed its env's info."""

    def __init__(self, env_id: str, num_envs: int, action_chunk: int = 1) -> None:
        from vla_gym.experts import make_expert

        self.experts = [make_expert(env_id, action_chunk=action_chunk) for _ in range(num_envs)]

    def act(self, obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.stack([e.act(None, info) for e, info in zip(self.experts, infos, strict=True)])

    def episode_done(self, env_index: int) -> None:
        self.experts[env_index].reset()


class ZeroPolicy:
    """Holds still: zero actions, the last dimension (the gripper) at ``gripper``."""

    def __init__(self, action_space: gym.Space, gripper: float = -1.0) -> None:
        self.action = np.zeros(action_space.shape, np.float32)
        self.action[..., -1] = gripper

    def act(self, obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.action.copy()

    def episode_done(self, env_index: int) -> None:
        pass


BUILTIN_POLICIES = ("expert", "random", "zero")
# --policy of the command lines; trained checkpoints go through the trainer's command
POLICY_HELP = "{} (a trained checkpoint: python -m trainers eval --checkpoint PATH)"


def check_policy_spec(policy: PolicySpec) -> None:
    """Refuse what can never become a policy before any env is built."""
    if isinstance(policy, str):
        if policy not in BUILTIN_POLICIES:
            raise ValueError(
                f"unknown policy {policy!r}: give a Policy, a factory (vector env -> Policy) or "
                f"one of {list(BUILTIN_POLICIES)}; a trainer checkpoint is evaluated with "
                "`python -m trainers eval --checkpoint PATH`"
            )
    elif not isinstance(policy, Policy) and not callable(policy):
        raise TypeError(
            "a policy needs act(obs, infos) -> actions and episode_done(env_index); got "
            f"{type(policy).__name__}"
        )


def build_policy(
    policy: PolicySpec,
    envs: gym.vector.VectorEnv,
    *,
    env_id: str,
    seed: int,
) -> Policy:
    """The :class:`Policy` for ``envs`` from a policy, a factory or a built-in name."""
    check_policy_spec(policy)
    if isinstance(policy, str):
        if policy == "expert":
            # a chunked env's single action space is (chunk, action_dim)
            shape = envs.single_action_space.shape
            chunk = shape[0] if len(shape) == 2 else 1
            return ExpertPolicy(env_id, envs.num_envs, action_chunk=chunk)
        if policy == "random":
            return RandomPolicy(envs.action_space, seed)
        return ZeroPolicy(envs.action_space)
    built = policy if isinstance(policy, Policy) else policy(envs)
    if not isinstance(built, Policy):
        raise TypeError(
            "the policy factory must return an object with act(obs, infos) -> actions and "
            f"episode_done(env_index); it returned a {type(built).__name__}"
        )
    return built


def policy_name(policy: PolicySpec) -> str:
    """How reports name a policy: its built-in name, ``name``/``__name__``, or its class."""
    if isinstance(policy, str):
        return policy
    return str(
        getattr(policy, "name", None) or getattr(policy, "__name__", None) or type(policy).__name__
    )
