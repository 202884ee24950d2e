"""Flow-matching denoising steps and their Gaussian densities (docs/algorithms.md, π0 convention).

The chain runs from ``x_1 ~ N(0, I)`` at ``t = 1`` to the action ``x_0`` at ``t = 0`` on the grid
``t_k = linspace(1, 1/K, K)`` followed by 0; ``δ_k = t_k − t_{k+1}``; the network predicts a
velocity ``v(x_t, t)`` with ``x0_hat = x_t − t·v`` and ``x1_hat = x_t + (1 − t)·v``.
Times may be scalars or tensors broadcastable against ``x`` (one time per example).
"""

from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def time_grid(steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(K + 1,)`` times ``[1, ..., 1/K, 0]`` (float32)."""
    grid = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    return torch.cat([grid, grid.new_zeros(1)]).to(device=device, dtype=torch.float32)


def ode_step(
    x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor
) -> torch.Tensor:
    """Deterministic step: ``(1 − t')·x0_hat + t'·x1_hat`` with ``t' = t − δ`` (= ``x − δ·v``)."""
    x0_hat, x1_hat = x - t * v, x + (1 - t) * v
    return (1 - t_next) * x0_hat + t_next * x1_hat


def sde_sigma(t: torch.Tensor, t_first_next: float, noise_level: float) -> torch.Tensor:
    """``σ_t = a·sqrt(t / (1 − t))``; at ``t = 1`` the next grid point stands in the denominator."""
    denominator = 1 - torch.where(t >= 1, torch.as_tensor(t_first_next, dtype=t.dtype), t)
    return noise_level * torch.sqrt(t / denominator)


def sde_step(
    x: torch.Tensor,
    v: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    t_first_next: float,
    noise_level: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the flow_sde (Flow-GRPO) transition from ``x_t`` to ``x_{t−δ}``."""
    delta = t - t_next
    sigma = sde_sigma(t, t_first_next, noise_level)
    x0_hat, x1_hat = x - t * v, x + (1 - t) * v
    mean = (1 - t_next) * x0_hat + (t_next - sigma**2 * delta / (2 * t)) * x1_hat
    std = torch.sqrt(delta) * sigma
    return mean, std.expand_as(mean)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-element log-density of ``N(mean, std²)`` at ``x``."""
    return -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - LOG_SQRT_2PI


def gaussian_entropy(std: torch.Tensor) -> torch.Tensor:
    """Per-element entropy of ``N(·, std²)``: ``½·log(2πe) + log std``."""
    return 0.5 + LOG_SQRT_2PI + torch.log(std)
