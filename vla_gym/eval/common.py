"""Pieces every evaluation protocol shares: per-env infos and the non-expert batch policies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np


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


class RandomPolicy:
    """Uniform actions from the vector env's action space."""

    def __init__(self, action_space: gym.Space, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def act(self, obs: Any, infos: Any) -> np.ndarray:
        return self.action_space.sample()

    def episode_done(self, env_index: int) -> None:
        pass


class CheckpointPolicy:
    """A trainer checkpoint (``trainers`` policy, deterministic actions)."""

    def __init__(self, path: str, envs: gym.vector.VectorEnv, device: str = "cpu") -> None:
        import torch

        from trainers import checkpoint
        from trainers.policies import make_policy
        from trainers.rollout import obs_to_torch

        state = checkpoint.load(path, device)
        if "config" not in state:
            raise ValueError(f"{path!r} is not a trainer checkpoint (no 'config' entry)")
        self._torch, self._obs_to_torch = torch, obs_to_torch
        self.device = torch.device(device)
        self.policy = make_policy(
            state["config"]["policy"], envs.single_observation_space, envs.single_action_space
        ).to(self.device)
        self.policy.load_state_dict(checkpoint.policy_state(state))
        self.policy.eval()

    def act(self, obs: Any, infos: Any) -> np.ndarray:
        with self._torch.no_grad():
            out = self.policy.act(self._obs_to_torch(obs, self.device), deterministic=True)
        return out.actions.cpu().numpy()

    def episode_done(self, env_index: int) -> None:
        pass


def checkpoint_env_kwargs(path: str, protocol_kwargs: Iterable[str]) -> dict[str, Any]:
    """The observation/action settings a checkpoint was trained with (its config's ``env``),
    less the kwargs the protocol sets itself."""
    from trainers import checkpoint

    env = checkpoint.load(path).get("config", {}).get("env", {})
    kwargs = {key: env[key] for key in ("obs_mode", "action_chunk") if key in env}
    kwargs.update(env.get("kwargs", {}))
    return {k: v for k, v in kwargs.items() if k not in set(protocol_kwargs)}
