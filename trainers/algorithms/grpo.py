"""GRPO: critic-free, group-relative advantages (``algorithms.md``).

Groups of ``G`` consecutive envs start from the same initial state. Each env's score is its
undiscounted episode return (sum of its valid rewards); its advantage is
``(score - group mean) / (group std + 1e-6)`` (Dr. GRPO: no division by the std), broadcast to
the env's valid steps. Groups whose mean score lies outside ``[lower, upper]`` (all-fail and
all-success groups with 0/1 rewards) are dropped from the batch.
"""

from __future__ import annotations

import torch

from trainers.config import AlgorithmConfig
from trainers.rollout import Rollout


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


def grpo_advantages(
    rollout: Rollout, config: AlgorithmConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """``(advantages (T, N), kept valid mask (T, N), metrics)``."""
    scores = episode_scores(rollout.rewards, rollout.valid)
    per_env = group_advantages(scores, config.group_size, dr_grpo=config.dr_grpo)
    if config.filter_groups:
        keep_env = kept_groups(
            scores, config.group_size, config.group_reward_lower, config.group_reward_upper
        )
    else:
        keep_env = torch.ones_like(scores, dtype=torch.bool)
    advantages = per_env[None].expand_as(rollout.rewards) * rollout.valid.float()
    mask = rollout.valid & keep_env[None]
    num_groups = scores.numel() // config.group_size
    metrics = {
        "rollout/kept_groups_frac": float(keep_env.float().mean()),
        "rollout/num_groups": float(num_groups),
        "rollout/scores_mean": float(scores.mean()),
    }
    return advantages, mask, metrics
