"""GRPO: critic-free, group-relative advantages.

Groups of ``G`` consecutive envs start from the same initial state. Each env's score is its
undiscounted episode return (sum of its valid rewards); its advantage is
``(score - group mean) / (group std + 1e-6)`` (Dr. GRPO: no division by the std), broadcast to
the env's valid steps. Groups whose mean score lies outside ``[lower, upper]`` (all-fail and
all-success groups with 0/1 rewards) are dropped from the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.algorithms.base import (
    Advantages,
    Algorithm,
    AlgorithmConfig,
    Batch,
    LossTerms,
    RolloutSetup,
)
from trainers.algorithms.update import surrogate_loss
from trainers.policies.base import EvaluateOutput
from trainers.rollout import Rollout
from trainers.schema import check


@dataclass
class GRPOConfig(AlgorithmConfig):
    name: str = "grpo"
    group_size: int = 8
    dr_grpo: bool = False  # Dr. GRPO: advantages not divided by the group std
    filter_groups: bool = True
    group_reward_lower: float = 0.1  # drop groups whose mean score is outside [lower, upper]
    group_reward_upper: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.group_size >= 2, f"algorithm.group_size must be >= 2, got {self.group_size}")
        check(
            self.group_reward_lower <= self.group_reward_upper,
            "algorithm.group_reward_lower must be <= algorithm.group_reward_upper",
        )


def group_seeds(base_seed: int, num_envs: int, group_size: int) -> list[int]:
    """One reset seed per env, shared inside each group of ``group_size`` consecutive envs."""
    return [base_seed + env // group_size for env in range(num_envs)]


def episode_scores(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Undiscounted return of each env's (first) episode: ``(T, N)`` -> ``(N,)``."""
    return (rewards * valid.float()).sum(0)


def group_advantages(
    scores: torch.Tensor, group_size: int, *, dr_grpo: bool = False, eps: float = 1e-6
) -> torch.Tensor:
    """Per-env advantage from its group's scores, ``(N,)`` -> ``(N,)``."""
    groups = scores.reshape(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if not dr_grpo:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def kept_groups(scores: torch.Tensor, group_size: int, lower: float, upper: float) -> torch.Tensor:
    """Per-env mask: True where the env's group mean score lies inside ``[lower, upper]``."""
    means = scores.reshape(-1, group_size).mean(dim=1)
    keep = (means >= lower) & (means <= upper)
    return keep.repeat_interleave(group_size)


class GRPO(Algorithm):
    name = "grpo"
    config_class = GRPOConfig
    uses_value = False
    config: GRPOConfig

    def check_setup(self, setup: RolloutSetup) -> None:
        size = self.config.group_size
        check(
            setup.num_envs % size == 0,
            f"env.num_envs ({setup.num_envs}) must be divisible by algorithm.group_size "
            f"({size}) for GRPO",
        )
        check(setup.episodic, "GRPO needs rollout.episodic: true (whole episodes per group)")
        check(
            setup.covers_episode,
            "GRPO needs rollouts covering a whole episode (rollout.num_steps: 0)",
        )
        check(
            setup.envs_per_stage % size == 0,
            f"each pipeline stage ({setup.envs_per_stage} envs) must hold whole GRPO groups "
            f"of {size}",
        )

    def reset_seeds(self, base_seed: int, num_envs: int) -> list[int]:
        return group_seeds(base_seed, num_envs, self.config.group_size)

    def advantages(self, rollout: Rollout) -> Advantages:
        config = self.config
        scores = episode_scores(rollout.rewards, rollout.valid)
        per_env = group_advantages(scores, config.group_size, dr_grpo=config.dr_grpo)
        if config.filter_groups:
            keep_env = kept_groups(
                scores, config.group_size, config.group_reward_lower, config.group_reward_upper
            )
        else:
            keep_env = torch.ones_like(scores, dtype=torch.bool)
        advantages = per_env[None].expand_as(rollout.rewards) * rollout.valid.float()
        metrics = {
            "rollout/kept_groups_frac": float(keep_env.float().mean()),
            "rollout/num_groups": float(scores.numel() // config.group_size),
            "rollout/scores_mean": float(scores.mean()),
        }
        return Advantages(advantages, mask=rollout.valid & keep_env[None], metrics=metrics)

    def loss(self, evaluated: EvaluateOutput, batch: Batch, *, train_actor: bool) -> LossTerms:
        return surrogate_loss(
            log_prob=evaluated.log_prob,
            old_log_prob=batch.log_probs,
            advantages=batch.advantages,
            entropy=evaluated.entropy,
            config=self.config,
        )
