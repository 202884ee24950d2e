"""MLP actor-critic for state observations (``obs_mode="flat"``): the PandaPickCube recipe.

Gaussian policy with a state-independent log-std over a tanh MLP backbone, and a separate tanh
MLP value net. Observations are normalised by running statistics kept in buffers (so they travel
with checkpoints). The env clips actions to [-1, 1]; the policy returns the clipped action and
keeps the raw Gaussian sample in ``extras["raw_action"]`` so its log-prob stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trainers import distributed
from trainers.policies.base import ActorCriticPolicy, EvaluateOutput, PolicyOutput

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class MLPConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    value_hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    activation: str = "tanh"  # tanh | relu
    log_std_init: float = -0.5
    normalize_obs: bool = True
    obs_clip: float = 10.0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"policy.activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        for name in ("hidden_sizes", "value_hidden_sizes"):
            sizes = getattr(self, name)
            if not all(isinstance(size, int) and size >= 1 for size in sizes):
                raise ValueError(f"policy.{name} must be positive integers, got {sizes!r}")


def mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear = nn.Linear(fan_in, fan_out)
        last = index == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class RunningNormalizer(nn.Module):
    """Running mean/variance of observations (parallel Welford update)."""

    def __init__(self, dim: int, clip: float) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        # over every rank's observations: all ranks keep the same statistics
        batch_mean, batch_var, n = distributed.moments(x)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(self.var + 1e-8).to(x.dtype)
        return ((x - self.mean.to(x.dtype)) / std).clamp(-self.clip, self.clip)


class MLPPolicy(ActorCriticPolicy):
    def __init__(self, config: MLPConfig, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                f"the mlp policy needs a flat Box observation (obs_mode='flat'), "
                f"got {observation_space}"
            )
        self.config = config
        self.action_shape = tuple(action_space.shape)
        obs_dim, act_dim = observation_space.shape[0], int(np.prod(self.action_shape))
        self.normalizer = (
            RunningNormalizer(obs_dim, config.obs_clip) if config.normalize_obs else None
        )
        self.actor = mlp([obs_dim, *config.hidden_sizes, act_dim], config.activation, 0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(config.log_std_init)))
        self.value_net = mlp([obs_dim, *config.value_hidden_sizes, 1], config.activation, 1.0)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float()
        return self.normalizer(obs) if self.normalizer is not None else obs

    def _distribution(self, features: torch.Tensor) -> torch.distributions.Normal:
        mean = self.actor(features)
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.action_shape)

    def act(self, obs: torch.Tensor, *, deterministic: bool = False) -> PolicyOutput:
        if self.normalizer is not None and self.training and not deterministic:
            self.normalizer.update(obs)
        features = self._features(obs)
        dist = self._distribution(features)
        raw = dist.mean if deterministic else dist.sample()
        return PolicyOutput(
            actions=self._shaped(raw.clamp(-1.0, 1.0)),
            log_prob=self._shaped(dist.log_prob(raw)),
            value=self.value_net(features).squeeze(-1),
            extras={"raw_action": self._shaped(raw)},
        )

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor, extras: dict[str, torch.Tensor]
    ) -> EvaluateOutput:
        features = self._features(obs)
        dist = self._distribution(features)
        raw = extras.get("raw_action", actions).reshape(actions.shape[0], -1)
        return EvaluateOutput(
            log_prob=self._shaped(dist.log_prob(raw)),
            entropy=self._shaped(dist.entropy()),
            value=self.value_net(features).squeeze(-1),
        )

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_net(self._features(obs)).squeeze(-1)
