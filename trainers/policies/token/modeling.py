"""The action-token VLA network: observation tokens -> fused features -> action-token logits.

- Observation tokens come from the shared :class:`~trainers.policies.encoders.ObservationEncoder`
  (camera patches, instruction, state), get a learned slot embedding and are fused by a few
  self-attention layers ("fused features").
- The action head has one learned query per action token (chunk step x action dimension,
  chunk-major as in OpenVLA). Queries attend to each other and cross-attend to the fused features,
  and a shared linear layer turns each into ``num_bins`` logits.
  * ``parallel`` (OpenVLA-OFT): bidirectional attention between queries, no token inputs, so a
    whole chunk is predicted in one pass.
  * ``autoregressive`` (OpenVLA): query ``i`` also sees the embedding of token ``i - 1`` (a
    start token for the first) under a causal mask; sampling runs one pass per token, training
    (log-probs, SFT) runs one teacher-forced pass.
- The value head is an MLP on the mean of the fused features.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from trainers.policies.encoders import ObservationEncoder
from trainers.policies.token.config import TokenConfig


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, causal: bool = False) -> torch.Tensor:
        batch, length, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            split(self.query(x)), split(key), split(value), is_causal=causal
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cross: bool) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attention = Attention(dim, heads)
        self.cross_norm = nn.LayerNorm(dim) if cross else None
        self.cross_attention = Attention(dim, heads) if cross else None
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        h = self.self_norm(x)
        x = x + self.self_attention(h, h, causal=causal)
        if self.cross_attention is not None:
            x = x + self.cross_attention(self.cross_norm(x), context)
        return x + self.mlp(self.mlp_norm(x))


class TokenVLA(nn.Module):
    def __init__(
        self, config: TokenConfig, observation_space: gym.Space, chunk: int, action_dim: int
    ) -> None:
        super().__init__()
        encoder_config = config.encoder_config()
        dim = encoder_config.dim
        self.config = config
        self.chunk, self.action_dim = chunk, action_dim
        self.num_tokens = chunk * action_dim
        self.autoregressive = config.decoding == "autoregressive"
        self.encoder = ObservationEncoder(observation_space, encoder_config)
        # Which observation token is which (image patches already carry camera + position).
        self.slot = nn.Parameter(torch.randn(self.encoder.num_tokens, dim) * 0.02)
        self.fusion = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, cross=False)
            for _ in range(config.fusion_layers)
        )
        self.fused_norm = nn.LayerNorm(dim)
        # Query of token (step s, dim a) = step embedding s + dimension embedding a.
        self.step_embedding = nn.Parameter(torch.randn(chunk, dim) * 0.02)
        self.dim_embedding = nn.Parameter(torch.randn(action_dim, dim) * 0.02)
        # Previous-token embeddings (index num_bins = start token), autoregressive only.
        self.token_embedding = (
            nn.Embedding(config.num_bins + 1, dim) if self.autoregressive else None
        )
        self.decoder = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, cross=True)
            for _ in range(config.decoder_layers)
        )
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.num_bins)
        self.value_head = nn.Sequential(
            nn.Linear(dim, config.value_hidden),
            nn.GELU(),
            nn.Linear(config.value_hidden, config.value_hidden),
            nn.GELU(),
            nn.Linear(config.value_hidden, 1),
        )

    # ---------------------------------------------------------------- features
    def fuse(self, obs: object) -> torch.Tensor:
        """Observation -> fused features ``(B, N, dim)``."""
        x = self.encoder(obs) + self.slot
        for block in self.fusion:
            x = block(x)
        return self.fused_norm(x)

    def value(self, fused: torch.Tensor) -> torch.Tensor:
        pooled = fused.mean(1)
        if self.config.detach_value_features:
            pooled = pooled.detach()
        return self.value_head(pooled).squeeze(-1)

    # ----------------------------------------------------------------- logits
    def _queries(self, batch: int) -> torch.Tensor:
        queries = (self.step_embedding[:, None, :] + self.dim_embedding[None, :, :]).flatten(0, 1)
        return queries.unsqueeze(0).expand(batch, -1, -1)

    def _decode(self, x: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        for block in self.decoder:
            x = block(x, fused, causal=self.autoregressive)
        return self.head(self.head_norm(x))

    def _shifted_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L')`` -> previous-token ids: start token, then ``tokens[:, :-1]``."""
        start = torch.full_like(tokens[:, :1], self.config.num_bins)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def logits(self, fused: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, chunk, action_dim, num_bins)`` in one pass.

        Autoregressive decoding needs the chunk's ``tokens`` ``(B, chunk, action_dim)`` (teacher
        forcing); parallel decoding ignores them.
        """
        batch = fused.shape[0]
        x = self._queries(batch)
        if self.autoregressive:
            if tokens is None:
                raise ValueError("autoregressive decoding needs the tokens to score")
            x = x + self.token_embedding(self._shifted_inputs(tokens.reshape(batch, -1)))
        return self._decode(x, fused).view(batch, self.chunk, self.action_dim, -1)

    def generate(
        self, fused: torch.Tensor, choose: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pick every token of a chunk: ``choose(logits (..., num_bins)) -> token ids``.

        Returns ``(tokens (B, chunk, action_dim), logits (B, chunk, action_dim, num_bins))``.
        """
        batch = fused.shape[0]
        if not self.autoregressive:
            logits = self.logits(fused)
            return choose(logits), logits
        queries = self._queries(batch)
        tokens = torch.zeros(batch, 0, dtype=torch.long, device=fused.device)
        steps = []
        for i in range(self.num_tokens):
            # Causal attention: position i depends only on positions <= i, so scoring the prefix
            # gives exactly the logits the teacher-forced pass computes for it in training.
            start = torch.full((batch, 1), self.config.num_bins, device=fused.device)
            previous = torch.cat([start, tokens], dim=1)
            x = queries[:, : i + 1] + self.token_embedding(previous)
            step_logits = self._decode(x, fused)[:, -1]
            steps.append(step_logits)
            tokens = torch.cat([tokens, choose(step_logits).unsqueeze(1)], dim=1)
        logits = torch.stack(steps, dim=1).view(batch, self.chunk, self.action_dim, -1)
        return tokens.view(batch, self.chunk, self.action_dim), logits
