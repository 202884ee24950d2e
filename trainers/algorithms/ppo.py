"""PPO: GAE advantages over a learned critic, with truncation bootstrap and critic warm-up.

Loss: the shared clipped surrogate and entropy bonus (``update.py``) plus a Huber value loss
(delta ``huber_delta``) with value clipping ``V_old + clamp(V - V_old, +-value_clip)``, taking the
larger of the clipped and unclipped losses. During the critic warm-up only the value loss counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainers.algorithms.base import (
    Advantages,
    Algorithm,
    AlgorithmConfig,
    Batch,
    LossTerms,
    bootstrap_truncated,
)
from trainers.algorithms.update import surrogate_loss
from trainers.policies.base import EvaluateOutput
from trainers.rollout import Rollout
from trainers.schema import check


@dataclass
class PPOConfig(AlgorithmConfig):
    gae_lambda: float = 0.95
    value_clip: float = 0.2  # V_old + clamp(V - V_old, +-value_clip)
    huber_delta: float = 10.0
    value_coef: float = 1.0
    # critic warm-up: the first N iterations update only the value head, so the actor's first
    # steps use advantages from a fitted critic rather than an untrained one
    critic_warmup_iterations: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.critic_warmup_iterations >= 0,
            "algorithm.critic_warmup_iterations must be >= 0",
        )


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over ``(T, N)``; returns ``(advantages, returns)``.

    ``dones[t]`` ends the episode at step ``t`` (no value or advantage flows back across it).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(steps)):
        not_done = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * gae_lambda * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


class PPO(Algorithm):
    name = "ppo"
    config_class = PPOConfig
    uses_value = True
    config: PPOConfig

    def advantages(self, rollout: Rollout) -> Advantages:
        config = self.config
        rewards = bootstrap_truncated(rollout, config.gamma)
        advantages, returns = compute_gae(
            rewards,
            rollout.values,
            rollout.dones,
            rollout.last_value,
            config.gamma,
            config.gae_lambda,
        )
        return Advantages(advantages, mask=rollout.valid, returns=returns)

    def trains_actor(self, iteration: int) -> bool:
        return iteration >= self.config.critic_warmup_iterations

    def loss(self, evaluated: EvaluateOutput, batch: Batch, *, train_actor: bool) -> LossTerms:
        config = self.config
        terms = surrogate_loss(
            log_prob=evaluated.log_prob,
            old_log_prob=batch.log_probs,
            advantages=batch.advantages,
            entropy=evaluated.entropy,
            config=config,
        )
        terms.value, terms.value_clip_ratio = value_loss(
            evaluated.value, batch.values, batch.returns, config
        )
        if train_actor:
            terms.total = (
                terms.policy + config.value_coef * terms.value - config.entropy_coef * terms.entropy
            )
        else:
            terms.total = config.value_coef * terms.value
        return terms


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, config: PPOConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clipped Huber value loss, fraction of samples where the clipped loss is larger)``."""
    clipped = old_values + (values - old_values).clamp(-config.value_clip, config.value_clip)
    loss = F.huber_loss(values, returns, reduction="none", delta=config.huber_delta)
    loss_clipped = F.huber_loss(clipped, returns, reduction="none", delta=config.huber_delta)
    return torch.maximum(loss, loss_clipped).mean(), (loss_clipped > loss).float().mean()
