"""The action-token VLA as a trainer policy (PPO, GRPO, SFT, evaluation).

Rollouts sample each action token from ``softmax(top_k(logits / temperature))``, decode the
tokens to bin centres (the env action) and return the per-token log-probabilities shaped like the
action ``(B, [k,] A)``; their sums over ``A`` and over the chunk are the action- and chunk-level
log-probabilities (the trainer's ``logprob_level`` picks one). The sampled tokens travel in
``extras["tokens"]`` so that training scores exactly what was drawn: bin centres decode back to
the same tokens, but the stored ids make that independent of floating-point round trips.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trainers.policies.base import ActorCriticPolicy, EvaluateOutput, Observation, PolicyOutput
from trainers.policies.token.config import TokenConfig
from trainers.policies.token.modeling import TokenVLA
from trainers.policies.token.sampling import (
    process_logits,
    sample_tokens,
    token_entropy,
    token_log_prob,
)
from trainers.policies.token.tokenizer import ActionTokenizer


class TokenPolicy(ActorCriticPolicy):
    def __init__(
        self, config: TokenConfig, observation_space: gym.Space, action_space: gym.Space
    ) -> None:
        super().__init__()
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) not in (1, 2):
            raise ValueError(
                "the token policy needs a Box action space shaped (A,) or (k, A), "
                f"got {action_space}"
            )
        low, high = float(np.min(action_space.low)), float(np.max(action_space.high))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"the token policy needs a bounded action space, got {action_space}")
        self.config = config
        self.action_shape = tuple(int(n) for n in action_space.shape)
        self.chunk = self.action_shape[0] if len(self.action_shape) == 2 else 1
        self.action_dim = self.action_shape[-1]
        self.tokenizer = ActionTokenizer(
            self.action_dim,
            num_bins=config.num_bins,
            normalization=config.normalization,
            quantiles=tuple(config.quantiles),
            std_range=config.std_range,
            action_low=low,
            action_high=high,
        )
        self.model = TokenVLA(config, observation_space, self.chunk, self.action_dim)

    # ------------------------------------------------------------- statistics
    # All statistics are buffers: they are saved with the policy's state_dict (the checkpoint).
    @torch.no_grad()
    def fit_action_statistics(self, actions: Any) -> None:
        """Fit the action-token normalisation on demonstration actions ``(..., A)``."""
        actions = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
        self.tokenizer.fit(actions.reshape(-1, self.action_dim))

    @torch.no_grad()
    def set_state_statistics(self, mean: Any, std: Any) -> None:
        """Mean and std of the state (the flat observation for ``obs_mode="flat"``)."""
        self.model.encoder.state.set_statistics(mean, std)

    def fit_statistics(self, dataset: Any) -> None:
        """Both from a :class:`trainers.demos.DemoDataset` (every step of every episode)."""
        self.set_state_statistics(*dataset.state_statistics())
        self.fit_action_statistics(dataset.actions())

    # ------------------------------------------------------------ interface
    def _chunked(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, [k,] A)`` -> ``(B, k, A)``."""
        return x.reshape(x.shape[0], self.chunk, self.action_dim)

    def _action_shaped(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.action_shape)

    def _distribution(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Processed logits of the behaviour (training) distribution, ``tokens`` kept."""
        return process_logits(logits, self.config.temperature, self.config.top_k, keep=tokens)

    @torch.no_grad()
    def act(self, obs: Observation, *, deterministic: bool = False) -> PolicyOutput:
        """A chunk of tokens drawn at the training temperature / top-k, or with ``deterministic``
        at the evaluation setting (greedy when ``eval_temperature`` is 0). The log-probs are
        always those of the training distribution, the one PPO/GRPO ratios are taken against."""
        temperature = self.config.eval_temperature if deterministic else self.config.temperature

        def choose(logits: torch.Tensor) -> torch.Tensor:
            processed = process_logits(logits, temperature, self.config.top_k)
            return sample_tokens(processed, temperature)

        fused = self.model.fuse(obs)
        tokens, logits = self.model.generate(fused, choose)
        log_prob = token_log_prob(self._distribution(logits, tokens), tokens)
        return PolicyOutput(
            actions=self._action_shaped(self.tokenizer.detokenize(tokens)),
            log_prob=self._action_shaped(log_prob),
            value=self.model.value(fused),
            extras={"tokens": self._action_shaped(tokens)},
        )

    def evaluate(
        self, obs: Observation, actions: torch.Tensor, extras: dict[str, torch.Tensor]
    ) -> EvaluateOutput:
        tokens = self._tokens(actions, extras)
        fused = self.model.fuse(obs)
        processed = self._distribution(self.model.logits(fused, tokens), tokens)
        return EvaluateOutput(
            log_prob=self._action_shaped(token_log_prob(processed, tokens)),
            entropy=self._action_shaped(token_entropy(processed)),
            value=self.model.value(fused),
        )

    def value(self, obs: Observation) -> torch.Tensor:
        return self.model.value(self.model.fuse(obs))

    def sft_loss(self, obs: Observation, actions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the demonstrated actions' tokens under the raw logits: against the
        one-hot tokens, or with ``label_sigma`` > 0 against Gaussian soft targets over the bins
        (the tokens still feed autoregressive teacher forcing)."""
        actions = self._chunked(self._device_tensor(actions))
        tokens = self.tokenizer.tokenize(actions)
        logits = self.model.logits(self.model.fuse(obs), tokens).reshape(-1, self.config.num_bins)
        if self.config.label_sigma > 0:
            targets = self.tokenizer.soft_targets(actions, self.config.label_sigma)
            targets = targets.reshape(-1, self.config.num_bins)
        else:
            targets = tokens.reshape(-1)
        return torch.nn.functional.cross_entropy(
            logits, targets, label_smoothing=self.config.label_smoothing
        )

    def token_accuracy(self, obs: Observation, actions: torch.Tensor) -> torch.Tensor:
        """Fraction of demonstrated tokens the greedy (teacher-forced) prediction gets right."""
        tokens = self._chunked(self.tokenizer.tokenize(self._device_tensor(actions)))
        logits = self.model.logits(self.model.fuse(obs), tokens)
        return (logits.argmax(-1) == tokens).float().mean()

    def _tokens(self, actions: torch.Tensor, extras: dict[str, torch.Tensor]) -> torch.Tensor:
        if "tokens" in extras:
            return self._chunked(extras["tokens"].to(self.tokenizer.center.device).long())
        return self._chunked(self.tokenizer.tokenize(self._device_tensor(actions)))

    def _device_tensor(self, actions: Any) -> torch.Tensor:
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.tokenizer.center.device)
        if tuple(actions.shape[1:]) != self.action_shape:
            expected = ", ".join(map(str, self.action_shape))
            raise ValueError(
                f"token policy: actions must be shaped (B, {expected}), got {tuple(actions.shape)}"
            )
        return actions
