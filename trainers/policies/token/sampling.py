"""The token distribution: temperature, top-k, sampling, log-probabilities and entropy.

The behaviour distribution of one action token is ``softmax(top_k(logits / temperature))``: the
same processing is applied when sampling in a rollout and when recomputing log-probabilities in
training, so the PPO/GRPO ratio compares like with like (as RLinf does for OpenVLA-OFT).

Top-k keeps exactly ``k`` tokens (ties broken by ``torch.topk``), so a token outside the top ``k``
is never drawn. When recomputing, the stored token is always kept in the support as well: with
unchanged weights that changes nothing (it was in the top ``k`` when drawn), and once the weights
have moved it keeps the log-probability finite instead of ``-inf``.

Log-probability levels: token level = one value per action element ``(..., k, A)``; action level =
sum over the action dimensions ``(..., k)``; chunk level = sum over the whole chunk ``(...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED = float("-inf")


def process_logits(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temperature-scaled, top-k-filtered logits (filtered entries are ``-inf``).

    ``temperature <= 0`` means greedy: the logits are left unscaled (the caller takes the argmax).
    ``top_k <= 0`` or ``>= num_bins`` disables the filter. ``keep`` (token ids shaped like
    ``logits[..., 0]``) are never filtered out.
    """
    if temperature > 0:
        logits = logits / temperature
    num_bins = logits.shape[-1]
    if 0 < top_k < num_bins:
        top = logits.topk(top_k, dim=-1).indices
        allowed = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top, True)
        if keep is not None:
            allowed.scatter_(-1, keep.unsqueeze(-1), True)
        logits = logits.masked_fill(~allowed, MASKED)
    return logits


def sample_tokens(
    processed_logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per position from processed logits; ``temperature <= 0`` is the argmax."""
    if temperature <= 0:
        return processed_logits.argmax(dim=-1)
    probs = F.softmax(processed_logits.float(), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    drawn = torch.multinomial(flat, 1, generator=generator)
    return drawn.reshape(probs.shape[:-1])


def token_log_prob(processed_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token under its processed distribution (shape of ``tokens``)."""
    log_probs = F.log_softmax(processed_logits.float(), dim=-1)
    return log_probs.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def token_entropy(processed_logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's processed distribution (filtered tokens contribute 0)."""
    log_probs = F.log_softmax(processed_logits.float(), dim=-1)
    # A filtered token has probability 0 and log-probability -inf: it contributes nothing, and
    # zeroing its log first keeps 0 * -inf (nan) out of both the value and the gradient.
    finite_log_probs = log_probs.masked_fill(torch.isneginf(log_probs), 0.0)
    return -(log_probs.exp() * finite_log_probs).sum(-1)


def log_prob_levels(token_level: torch.Tensor) -> dict[str, torch.Tensor]:
    """Token ``(B, k, A)``, action ``(B, k)`` and chunk ``(B,)`` log-probabilities."""
    if token_level.ndim != 3:
        shape = tuple(token_level.shape)
        raise ValueError(f"expected token log-probs shaped (B, k, A), got {shape}")
    action_level = token_level.sum(-1)
    return {"token": token_level, "action": action_level, "chunk": action_level.sum(-1)}
