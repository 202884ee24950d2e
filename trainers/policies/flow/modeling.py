"""π0-style flow-matching VLA: prefix transformer + action expert, with RL log-probabilities.

Network
- Prefix: image tokens (shared CNN per camera + camera embedding), one language token, one state
  token (``trainers/policies/encoders.py``) through a pre-norm transformer.
- Action expert: one token per chunk element (noisy action + flow-time embedding + chunk
  position); each layer attends jointly to the prefix (its own key/value projection of the prefix
  output, computed once per observation and reused by every denoising step) and to the chunk.
  It outputs the velocity of the whole chunk and, for ``flow_noise``, a bounded per-element std.
- Value head: an MLP on the mean of the action-expert tokens (evaluated at ``t = 1`` on the
  prior's mean, the zero chunk) or on the mean of the prefix tokens; input detached by default.

Sampling (``act``) runs K denoising steps: deterministic ``flow_ode`` (evaluation), ``flow_sde``
(one uniformly drawn step per batch is stochastic, the rest ODE) or ``flow_noise`` (every step
stochastic with the learned std, joint log-prob). ``extras`` returns the chain
``(B, K + 1, k, A)`` and the stochastic step index ``(B,)`` so ``evaluate`` recomputes the
log-prob, entropy and value exactly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from trainers.policies.base import ActorCriticPolicy, EvaluateOutput, Observation, PolicyOutput
from trainers.policies.encoders import ObservationEncoder, sinusoidal_embedding
from trainers.policies.flow.config import FlowConfig
from trainers.policies.flow.sampling import (
    gaussian_entropy,
    gaussian_log_prob,
    ode_step,
    sde_step,
    time_grid,
)


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * width)


class PrefixBlock(nn.Module):
    """Pre-norm self-attention block over the prefix tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        x = x + self.out(merge_heads(F.scaled_dot_product_attention(q, k, v)))
        return x + self.mlp(self.norm2(x))


class ExpertBlock(nn.Module):
    """Action-expert block: chunk tokens attend jointly to the prefix and to the chunk."""

    def __init__(self, dim: int, prefix_dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.prefix_kv = nn.Linear(prefix_dim, 2 * dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dim)

    def project_prefix(self, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.prefix_kv(prefix).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(
        self, x: torch.Tensor, prefix_kv: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        k = torch.cat([prefix_kv[0], k], dim=2)
        v = torch.cat([prefix_kv[1], v], dim=2)
        x = x + self.out(merge_heads(F.scaled_dot_product_attention(q, k, v)))
        return x + self.mlp(self.norm2(x))


class Prefix:
    """The encoded observation: prefix output tokens and each expert layer's keys/values."""

    def __init__(self, tokens: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]]):
        self.tokens, self.kv = tokens, kv

    def repeat_interleave(self, n: int) -> Prefix:
        """Each example repeated ``n`` times (to run several denoising steps in one batch)."""
        return Prefix(
            self.tokens.repeat_interleave(n, 0),
            [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.kv],
        )


_MIN_ACTION_SCALE = 1e-3  # a dimension the demos never move stays finite


def _identity_normalisation_if_missing(
    module: nn.Module, state_dict: dict, prefix: str, *args: Any
) -> None:
    """Checkpoints from before action normalisation load with the identity (how they trained)."""
    state_dict.setdefault(prefix + "action_center", torch.zeros_like(module.action_center))
    state_dict.setdefault(prefix + "action_scale", torch.ones_like(module.action_scale))


class FlowPolicy(ActorCriticPolicy):
    """Flow-matching VLA policy ``FlowPolicy(config, observation_space, action_space)``."""

    def __init__(
        self, config: FlowConfig, observation_space: spaces.Space, action_space: spaces.Box
    ):
        super().__init__()
        if not isinstance(action_space, spaces.Box) or len(action_space.shape) not in (1, 2):
            raise ValueError(
                f"flow policy needs a Box action space (A,) or (k, A), got {action_space}"
            )
        self.config = config
        self.action_shape = tuple(action_space.shape)
        self.chunk, self.action_dim = (
            (1, self.action_shape[0]) if len(self.action_shape) == 1 else self.action_shape
        )
        c = config
        self.encoder = ObservationEncoder(observation_space, c.encoder_config())
        self.prefix_blocks = nn.ModuleList(
            PrefixBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.prefix_layers)
        )
        self.prefix_norm = nn.LayerNorm(c.dim)
        self.action_in = nn.Linear(self.action_dim, c.expert_dim)
        self.time_mlp = MLP(c.expert_dim, c.expert_dim, c.expert_dim)
        self.chunk_position = nn.Parameter(torch.randn(self.chunk, c.expert_dim) * 0.02)
        self.expert_blocks = nn.ModuleList(
            ExpertBlock(c.expert_dim, c.dim, c.expert_heads, c.mlp_ratio)
            for _ in range(c.expert_layers)
        )
        self.expert_norm = nn.LayerNorm(c.expert_dim)
        self.velocity_out = nn.Linear(c.expert_dim, self.action_dim)
        self.noise_head = MLP(c.expert_dim, c.expert_dim, self.action_dim)
        value_in = c.expert_dim if c.value_head == "expert" else c.dim
        self.value_head = nn.Sequential(
            nn.LayerNorm(value_in),
            nn.Linear(value_in, c.value_hidden),
            nn.Tanh(),
            nn.Linear(c.value_hidden, c.value_hidden),
            nn.Tanh(),
            nn.Linear(c.value_hidden, 1),
        )
        # Actions are modelled normalised: the 1st..99th percentile of the demonstrations maps
        # to [-1, 1] per dimension (as pi0 and OpenVLA do). Raw, a dimension whose demos move
        # by a few hundredths (x/y of a reach) is lost under the unit noise of flow matching
        # and the policy learns to ignore what decides it (on PandaPickCubeVision it never
        # reached the cube). Identity until SFT fits them; saved with the weights.
        self.register_buffer("action_center", torch.zeros(self.action_dim))
        self.register_buffer("action_scale", torch.ones(self.action_dim))
        bounds = (
            np.broadcast_to(b, self.action_shape) for b in (action_space.low, action_space.high)
        )
        low, high = (
            torch.tensor(b.reshape(self.chunk, self.action_dim), dtype=torch.float32)
            for b in bounds
        )
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)
        self.register_load_state_dict_pre_hook(_identity_normalisation_if_missing)
        self._prefix_fn = self._encode_prefix
        self._expert_fn = self._expert_features
        self._compiled = False

    # ---------------------------------------------------------------------------- network

    @property
    def device(self) -> torch.device:
        return self.chunk_position.device

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _maybe_compile(self) -> None:
        if self.config.compile and not self._compiled and self.device.type == "cuda":
            self._prefix_fn = torch.compile(self._encode_prefix)
            self._expert_fn = torch.compile(self._expert_features)
        self._compiled = True

    def _encode_prefix(self, obs: Observation) -> Prefix:
        x = self.encoder(obs)
        for block in self.prefix_blocks:
            x = block(x)
        x = self.prefix_norm(x)
        return Prefix(x, [block.project_prefix(x) for block in self.expert_blocks])

    def _expert_features(self, prefix: Prefix, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Action-expert output tokens ``(B, k, E)`` for noisy chunks ``x`` at times ``t`` (B,)."""
        time = self.time_mlp(sinusoidal_embedding(t, self.config.expert_dim))
        h = self.action_in(x) + time[:, None, :] + self.chunk_position
        for block, kv in zip(self.expert_blocks, prefix.kv, strict=True):
            h = block(h, kv)
        return self.expert_norm(h)

    def encode(self, obs: Observation) -> Prefix:
        self._maybe_compile()
        with self._autocast():
            return self._prefix_fn(obs)

    def expert(
        self, prefix: Prefix, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity ``(B, k, A)`` in float32, expert features ``(B, k, E)``)."""
        with self._autocast():
            h = self._expert_fn(prefix, x, t)
            velocity = self.velocity_out(h)
        return velocity.float(), h

    def noise_std(self, features: torch.Tensor) -> torch.Tensor:
        """flow_noise's learned std, bounded to ``[noise_std_min, noise_std_max]``."""
        lo, hi = self.config.noise_std_min, self.config.noise_std_max
        return lo + (hi - lo) * torch.sigmoid(self.noise_head(features.float()))

    def _value(self, prefix: Prefix) -> torch.Tensor:
        if self.config.value_head == "prefix":
            features = prefix.tokens.float().mean(1)
        else:
            # The expert at t = 1 on the prior's mean (the zero chunk): a function of the
            # observation alone, identical in act(), evaluate() and value().
            batch = prefix.tokens.shape[0]
            zeros = torch.zeros(batch, self.chunk, self.action_dim, device=self.device)
            ones = torch.ones(batch, device=self.device)
            with self._autocast():
                features = self._expert_fn(prefix, zeros, ones).float().mean(1)
        if self.config.value_detach:
            features = features.detach()
        return self.value_head(features).squeeze(-1)

    def set_state_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Normalisation of the state input (SFT sets it from the demonstrations)."""
        self.encoder.state.set_statistics(mean, std)

    @torch.no_grad()
    def fit_action_statistics(self, actions: np.ndarray) -> None:
        """Action normalisation from demonstration actions ``(..., A)``: q01..q99 -> [-1, 1]."""
        flat = np.asarray(actions, dtype=np.float64).reshape(-1, self.action_dim)
        if len(flat) == 0:
            raise ValueError("fit_action_statistics: got no actions")
        low, high = np.quantile(flat, [0.01, 0.99], axis=0)
        self.action_center.copy_(torch.as_tensor((low + high) / 2, dtype=torch.float32))
        scale = torch.as_tensor((high - low) / 2, dtype=torch.float32)
        self.action_scale.copy_(scale.clamp_min(_MIN_ACTION_SCALE))

    def fit_statistics(self, dataset: Any) -> None:
        """State and action normalisation from a :class:`trainers.demos.DemoDataset`."""
        self.set_state_statistics(*dataset.state_statistics())
        self.fit_action_statistics(dataset.actions())

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions ``(B, k, A)`` -> the space the flow is modelled in."""
        return (actions - self.action_center) / self.action_scale

    def denormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        """Flow samples ``(B, k, A)`` -> env actions, clipped to the action space."""
        actions = self.action_center + self.action_scale * x
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    # ---------------------------------------------------------------------------- sampling

    def _grid(self) -> torch.Tensor:
        return time_grid(self.config.denoise_steps, self.device)

    def _to_action(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.action_shape)

    @torch.no_grad()
    def act(self, obs: Observation, *, deterministic: bool = False) -> PolicyOutput:
        prefix = self.encode(obs)
        batch = prefix.tokens.shape[0]
        steps, grid = self.config.denoise_steps, self._grid()
        method = "flow_ode" if deterministic else self.config.noise_method
        shape = (batch, self.chunk, self.action_dim)
        # Deterministic sampling starts from the prior's mean so evaluation is reproducible.
        x = (
            torch.zeros(shape, device=self.device)
            if deterministic
            else torch.randn(shape, device=self.device)
        )
        chain = [x]
        stochastic_index = int(torch.randint(steps, ())) if method == "flow_sde" else 0
        log_prob = torch.zeros(shape, device=self.device)
        if method == "flow_noise":
            log_prob = gaussian_log_prob(x, torch.zeros_like(x), torch.ones_like(x))
        for k in range(steps):
            t, t_next = grid[k], grid[k + 1]
            velocity, features = self.expert(prefix, x, t.expand(batch))
            if method == "flow_sde" and k == stochastic_index:
                mean, std = sde_step(
                    x, velocity, t, t_next, float(grid[1]), self.config.noise_level
                )
                x = mean + std * torch.randn_like(mean)
                log_prob = gaussian_log_prob(x, mean, std)
            elif method == "flow_noise":
                mean, std = ode_step(x, velocity, t, t_next), self.noise_std(features)
                x = mean + std * torch.randn_like(mean)
                log_prob = log_prob + gaussian_log_prob(x, mean, std)
            else:
                x = ode_step(x, velocity, t, t_next)
            chain.append(x)
        if method == "flow_noise":
            log_prob = log_prob / (steps + 1)  # joint log-prob: mean over the K + 1 terms
        return PolicyOutput(
            actions=self._to_action(self.denormalize_actions(x)),
            log_prob=self._to_action(log_prob),
            value=self._value(prefix),
            extras={
                "chain": torch.stack(chain, dim=1),
                "denoise_index": torch.full((batch,), stochastic_index, device=self.device),
            },
        )

    def evaluate(
        self, obs: Observation, actions: torch.Tensor, extras: dict[str, torch.Tensor]
    ) -> EvaluateOutput:
        chain = extras["chain"].to(self.device, torch.float32)  # (B, K + 1, k, A)
        batch, steps = chain.shape[0], self.config.denoise_steps
        if chain.shape[1:] != (steps + 1, self.chunk, self.action_dim):
            raise ValueError(
                f"chain shaped {tuple(chain.shape)} does not match (B, {steps + 1}, "
                f"{self.chunk}, {self.action_dim}) of this policy"
            )
        grid = self._grid()
        prefix = self.encode(obs)
        if self.config.noise_method == "flow_sde":
            index = extras["denoise_index"].to(self.device).long()
            rows = torch.arange(batch, device=self.device)
            x, x_next = chain[rows, index], chain[rows, index + 1]
            t, t_next = grid[index], grid[index + 1]
            velocity, _ = self.expert(prefix, x, t)
            mean, std = sde_step(
                x,
                velocity,
                t[:, None, None],
                t_next[:, None, None],
                float(grid[1]),
                self.config.noise_level,
            )
            log_prob, entropy = gaussian_log_prob(x_next, mean, std), gaussian_entropy(std)
        else:
            # All K transitions of every example in one batch of B·K.
            x = chain[:, :steps].reshape(batch * steps, self.chunk, self.action_dim)
            x_next = chain[:, 1:].reshape_as(x)
            t = grid[:steps].repeat(batch)
            t_next = grid[1:].repeat(batch)
            velocity, features = self.expert(prefix.repeat_interleave(steps), x, t)
            mean = ode_step(x, velocity, t[:, None, None], t_next[:, None, None])
            std = self.noise_std(features)
            transitions = gaussian_log_prob(x_next, mean, std).view(batch, steps, self.chunk, -1)
            prior = gaussian_log_prob(
                chain[:, 0], torch.zeros_like(chain[:, 0]), torch.ones_like(chain[:, 0])
            )
            log_prob = (prior + transitions.sum(1)) / (steps + 1)
            entropy = gaussian_entropy(std).view(batch, steps, self.chunk, -1).mean(1)
        return EvaluateOutput(
            log_prob=self._to_action(log_prob),
            entropy=self._to_action(entropy),
            value=self._value(prefix),
        )

    def value(self, obs: Observation) -> torch.Tensor:
        return self._value(self.encode(obs))

    def sample_flow_time(self, batch: int) -> torch.Tensor:
        if self.config.sft_time_sampling == "beta":
            beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
            return (1 - beta.sample((batch,))).to(self.device).clamp(1e-3, 1.0)
        return torch.rand(batch, device=self.device)

    def sft_loss(self, obs: Observation, actions: torch.Tensor) -> torch.Tensor:
        """Flow matching ``‖v(x_τ, τ) − (noise − action)‖²``, ``x_τ = τ·noise + (1 − τ)·action``."""
        action = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        action = self.normalize_actions(
            action.reshape(action.shape[0], self.chunk, self.action_dim)
        )
        noise = torch.randn_like(action)
        tau = self.sample_flow_time(action.shape[0])
        x = tau[:, None, None] * noise + (1 - tau[:, None, None]) * action
        velocity, _ = self.expert(self.encode(obs), x, tau)
        return F.mse_loss(velocity, noise - action)
