"""The algorithm interface: what PPO, GRPO (and any new clipped-surrogate method) provide.

An :class:`Algorithm` turns a rollout into per-step advantages (and value targets when it trains
a critic), chooses the reset seeds of a rollout, and says when the actor trains. The update
itself (clipped surrogate over shuffled micro-batches) is shared: ``trainers/algorithms/update.py``.
Each algorithm has a typed config, a subclass of :class:`AlgorithmConfig` holding its own keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from trainers.policies.base import EvaluateOutput, Observation
from trainers.rollout import Rollout, index_obs, obs_to_device
from trainers.schema import check

LOGPROB_LEVELS = ("chunk", "token")


@dataclass
class AlgorithmConfig:
    """Settings every algorithm shares: the clipped surrogate, the optimiser, the batches."""

    name: str = "ppo"
    # discount; also adds gamma * V(final obs) to the reward of a truncated step
    gamma: float = 0.99
    normalize_advantages: bool = True
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    update_epochs: int = 4
    micro_batch_size: int = 256  # samples per forward/backward pass
    global_batch_size: int = 256  # samples per optimiser step (gradient accumulation)
    lr: float = 3e-4
    value_lr: float = 3e-4  # parameters named value*/critic* (the value head)
    weight_decay: float = 0.0
    logprob_level: str = "chunk"  # chunk: one ratio per policy step; token: one per element
    # both learning rates fall linearly to 0 at runner.max_iterations (CleanRL's anneal_lr): a
    # run whose policy peaks and then drifts makes ever smaller steps
    anneal_lr: bool = False
    # both learning rates rise linearly from 1/(N + 1) of their value over the first N
    # iterations: Adam's first steps move every weight by about the full rate whatever its
    # gradient, which from an SFT start is the largest policy change of a run
    lr_warmup_iterations: int = 0
    # behaviour-cloning regularisation: every optimiser step also minimises sft_coef times the
    # policy's SFT loss on a batch of sft_batch_size demonstration samples from sft_demos. RL
    # updates on a few tasks at a time move the weights every task shares; the demonstrations
    # of all tasks hold the policy near what SFT taught where RL's episodes give no signal.
    sft_coef: float = 0.0
    sft_demos: str | None = None  # a demo directory or local LeRobotDataset
    sft_batch_size: int = 64

    def lr_scale(self, iteration: int, max_iterations: int) -> float:
        """The factor on both learning rates for the update of ``iteration`` (0-based)."""
        scale = 1.0
        if iteration < self.lr_warmup_iterations:
            scale = (iteration + 1) / (self.lr_warmup_iterations + 1)
        if self.anneal_lr:
            scale *= max(0.0, 1.0 - iteration / max_iterations)
        return scale

    def __post_init__(self) -> None:
        check(
            self.logprob_level in LOGPROB_LEVELS,
            f"algorithm.logprob_level must be chunk or token, got {self.logprob_level!r}",
        )
        check(0 <= self.clip_ratio_low < 1, "algorithm.clip_ratio_low must be in [0, 1)")
        check(self.clip_ratio_high >= 0, "algorithm.clip_ratio_high must be >= 0")
        check(self.lr_warmup_iterations >= 0, "algorithm.lr_warmup_iterations must be >= 0")
        check(self.update_epochs >= 1, "algorithm.update_epochs must be >= 1")
        check(self.sft_coef >= 0, f"algorithm.sft_coef must be >= 0, got {self.sft_coef}")
        check(self.sft_batch_size >= 1, "algorithm.sft_batch_size must be >= 1")
        check(self.micro_batch_size >= 1, "algorithm.micro_batch_size must be >= 1")
        check(
            self.global_batch_size % self.micro_batch_size == 0,
            f"algorithm.global_batch_size ({self.global_batch_size}) must be divisible by "
            f"algorithm.micro_batch_size ({self.micro_batch_size})",
        )


@dataclass
class Advantages:
    """What an algorithm makes of one rollout, every tensor ``(T, N)``."""

    advantages: torch.Tensor
    mask: torch.Tensor  # steps that enter the loss
    returns: torch.Tensor | None = None  # value targets (algorithms with a critic)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Batch:
    """Flat training samples (only the steps that enter the loss)."""

    obs: Observation
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor | None  # value targets (algorithms with a critic)
    values: torch.Tensor | None  # the rollout's value estimates (value clipping)
    extras: dict[str, torch.Tensor]

    @property
    def size(self) -> int:
        return self.actions.shape[0]

    def select(self, index: torch.Tensor, device: torch.device) -> Batch:
        """The samples at ``index``, on ``device``."""
        pick = lambda x: None if x is None else x[index].to(device)  # noqa: E731
        return Batch(
            obs=obs_to_device(index_obs(self.obs, index), device),
            actions=pick(self.actions),
            log_probs=pick(self.log_probs),
            advantages=pick(self.advantages),
            returns=pick(self.returns),
            values=pick(self.values),
            extras={key: pick(value) for key, value in self.extras.items()},
        )


@dataclass
class LossTerms:
    """One micro-batch's loss (``total``, minimised) and the terms it is logged by."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clipfrac: torch.Tensor
    value_clip_ratio: torch.Tensor


@dataclass(frozen=True)
class RolloutSetup:
    """The rollout facts an algorithm may need to accept a config."""

    num_envs: int
    envs_per_stage: int
    episodic: bool
    covers_episode: bool  # each rollout holds whole episodes


class Algorithm(ABC):
    """Base class; subclasses set ``name``, ``config_class`` and ``uses_value``."""

    name: ClassVar[str]
    config_class: ClassVar[type[AlgorithmConfig]]
    uses_value: ClassVar[bool]  # trains a critic: value loss, value targets in the batch

    def __init__(self, config: AlgorithmConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    def check_setup(self, setup: RolloutSetup) -> None:  # noqa: B027  (most accept any)
        """Raise ``ConfigError`` when the rollouts do not suit the algorithm."""

    def reset_seeds(self, base_seed: int, num_envs: int) -> list[int]:
        """One reset seed per env for the rollout starting at ``base_seed``."""
        return [base_seed + i for i in range(num_envs)]

    @abstractmethod
    def advantages(self, rollout: Rollout) -> Advantages:
        """Advantages (and value targets) of every step of ``rollout``."""

    def trains_actor(self, iteration: int) -> bool:
        """False while only the critic learns (e.g. PPO's critic warm-up)."""
        return True

    @abstractmethod
    def loss(self, evaluated: EvaluateOutput, batch: Batch, *, train_actor: bool) -> LossTerms:
        """The loss of one micro-batch (``batch`` on the actor's device)."""


def bootstrap_truncated(rollout: Rollout, gamma: float) -> torch.Tensor:
    """Rewards with ``gamma * V(final obs)`` added on truncated steps (NEXT_STEP layout)."""
    next_values = torch.cat([rollout.values[1:], rollout.last_value[None]], dim=0)
    return rollout.rewards + gamma * next_values * rollout.truncated.float()
