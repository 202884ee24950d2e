"""The policy interface the trainer (PPO, GRPO, SFT, evaluation) talks to.

Observations arrive as a batch converted from the vector env by the trainer:
``{"images": {camera: uint8 (B, H, W, 3)}, "state": float32 (B, D), "instruction": list[str]}``
for ``obs_mode="vla"``, or one float32 tensor ``(B, D)`` for ``obs_mode="flat"``. Each policy
does its own normalisation.

Log-probabilities and entropies are returned per action element, shaped like the action
``(B, *action_shape)`` (``(B, A)`` or ``(B, k, A)``): the loss reduces them ("chunk level": one
ratio per policy step, summed; "token level": one ratio per element). ``extras`` carries whatever
a policy needs to recompute its log-probability exactly in training (a flow chain and its
stochastic step index, sampled tokens, ...): tensors with a leading batch dimension, stored by the
rollout buffer and handed back to :meth:`evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Observation = dict[str, Any] | torch.Tensor


@dataclass
class PolicyOutput:
    actions: torch.Tensor  # (B, *action_shape) in [-1, 1]
    log_prob: torch.Tensor  # (B, *action_shape)
    value: torch.Tensor  # (B,)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class EvaluateOutput:
    log_prob: torch.Tensor  # (B, *action_shape)
    entropy: torch.Tensor  # broadcastable to (B, *action_shape)
    value: torch.Tensor  # (B,)


class ActorCriticPolicy(nn.Module):
    """Base class of every trainer policy (MLP, flow-matching VLA, action-token VLA)."""

    def act(self, obs: Observation, *, deterministic: bool = False) -> PolicyOutput:
        """Sample (or, deterministically, pick) actions with their log-prob and value."""
        raise NotImplementedError

    def evaluate(
        self, obs: Observation, actions: torch.Tensor, extras: dict[str, torch.Tensor]
    ) -> EvaluateOutput:
        """Log-prob, entropy and value of stored actions under the current weights."""
        raise NotImplementedError

    def value(self, obs: Observation) -> torch.Tensor:
        """State value (B,), e.g. to bootstrap truncated episodes."""
        raise NotImplementedError

    def sft_loss(self, obs: Observation, actions: torch.Tensor) -> torch.Tensor:
        """Supervised loss on demonstration actions (policies that support SFT override it)."""
        raise NotImplementedError(f"{type(self).__name__} does not support supervised training")
