"""Continuous actions <-> discrete action tokens (OpenVLA-style per-dimension uniform bins).

An action element ``a`` (the env's normalised command, in ``[low, high]`` = ``[-1, 1]``) is first
mapped to the tokenizer's range ``u = clip((a - center) / scale, -1, 1)`` with statistics fitted on
demonstrations, then binned uniformly: ``num_bins`` bins of width ``2 / num_bins`` over ``[-1, 1]``.
A token decodes to its bin centre, so the round-trip error is at most half a bin (``1 / num_bins``
in ``u``, ``scale / num_bins`` in ``a``) for every action inside the fitted range.

Why fit statistics at all: scripted experts and human demonstrations rarely use the full command
range (a Panda expert moves at a fraction of its maximum speed), so bins over ``[-1, 1]`` would
waste most of the 256 tokens. Like OpenVLA we map the 1st..99th percentile (``"quantile"``) or
mean ± ``std_range`` standard deviations (``"meanstd"``) onto the bins; ``"none"`` bins ``[-1, 1]``
as is. The statistics are buffers, so they travel with the policy's ``state_dict`` (checkpoint).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NORMALIZATIONS = ("quantile", "meanstd", "none")
# A dimension the demonstrations never move (e.g. a base that stays put) keeps a tiny, non-zero
# scale: it then decodes to (almost) the demonstrated constant instead of dividing by zero.
MIN_SCALE = 1e-4


class ActionTokenizer(nn.Module):
    def __init__(
        self,
        action_dim: int,
        num_bins: int = 256,
        normalization: str = "quantile",
        quantiles: tuple[float, float] = (0.01, 0.99),
        std_range: float = 3.0,
        action_low: float = -1.0,
        action_high: float = 1.0,
    ) -> None:
        super().__init__()
        if int(action_dim) < 1:
            raise ValueError(f"action_dim must be a positive integer, got {action_dim!r}")
        if int(num_bins) < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        lo_q, hi_q = quantiles
        if not 0.0 <= lo_q < hi_q <= 1.0:
            raise ValueError(f"quantiles must satisfy 0 <= low < high <= 1, got {quantiles!r}")
        if not std_range > 0:
            raise ValueError(f"std_range must be positive, got {std_range!r}")
        if not action_low < action_high:
            raise ValueError(
                f"action_low must be below action_high, got {action_low}, {action_high}"
            )
        self.action_dim = int(action_dim)
        self.num_bins = int(num_bins)
        self.normalization = normalization
        self.quantiles = (float(lo_q), float(hi_q))
        self.std_range = float(std_range)
        self.action_low = float(action_low)
        self.action_high = float(action_high)
        edges = torch.linspace(-1.0, 1.0, self.num_bins + 1)
        self.register_buffer("bin_centers", (edges[:-1] + edges[1:]) / 2, persistent=False)
        # Identity statistics until fit(): bins over the env's [-1, 1] range.
        self.register_buffer("center", torch.zeros(self.action_dim))
        self.register_buffer("scale", torch.ones(self.action_dim))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def bin_width(self) -> float:
        """Width of one bin in the tokenizer's range [-1, 1]."""
        return 2.0 / self.num_bins

    def extra_repr(self) -> str:
        return f"action_dim={self.action_dim}, num_bins={self.num_bins}, {self.normalization}"

    # ------------------------------------------------------------ statistics
    @torch.no_grad()
    def fit(self, actions: torch.Tensor) -> ActionTokenizer:
        """Fit the normalisation statistics on demonstration actions ``(..., action_dim)``."""
        flat = self._check(torch.as_tensor(actions), "fit").reshape(-1, self.action_dim)
        flat = flat.to(device=self.center.device, dtype=torch.float32)
        if flat.shape[0] == 0:
            raise ValueError("ActionTokenizer.fit: got no actions")
        if self.normalization == "quantile":
            # numpy: torch.quantile refuses inputs above 2**24 elements (large demo sets).
            low, high = np.quantile(flat.cpu().double().numpy(), self.quantiles, axis=0)
            low, high = (torch.as_tensor(x, device=flat.device).float() for x in (low, high))
            center, scale = (low + high) / 2, (high - low) / 2
        elif self.normalization == "meanstd":
            center = flat.mean(0)
            scale = self.std_range * flat.std(0, unbiased=False)
        else:
            center, scale = torch.zeros_like(self.center), torch.ones_like(self.scale)
        self.center.copy_(center)
        self.scale.copy_(scale.clamp_min(MIN_SCALE))
        self.fitted.fill_(True)
        return self

    # -------------------------------------------------------- normalisation
    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions -> the tokenizer's range [-1, 1] (clipped)."""
        actions = self._check(actions, "normalize")
        return ((actions - self.center) / self.scale).clamp(-1.0, 1.0)

    def unnormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """The tokenizer's range -> env actions (clipped to the env's bounds)."""
        actions = normalized * self.scale + self.center
        return actions.clamp(self.action_low, self.action_high)

    # ----------------------------------------------------------- tokens
    def tokenize(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions ``(..., action_dim)`` -> bin indices (int64, same shape)."""
        unit = (self.normalize(actions) + 1.0) / 2.0  # [0, 1]
        return (unit * self.num_bins).floor().long().clamp(0, self.num_bins - 1)

    def soft_targets(self, actions: torch.Tensor, sigma_bins: float) -> torch.Tensor:
        """Env actions ``(..., action_dim)`` -> a distribution over the bins ``(..., action_dim,
        num_bins)``: the mass a Gaussian centred on the normalised action, with a std of
        ``sigma_bins`` bin widths, puts in each bin (renormalised over [-1, 1]). Cross-entropy
        against it (HL-Gauss, Farebrother et al. 2024) tells the network that neighbouring bins
        are near misses, where one-hot targets count every other bin as equally wrong."""
        if sigma_bins <= 0:
            raise ValueError(f"soft_targets: sigma_bins must be > 0, got {sigma_bins}")
        normalized = self.normalize(actions).unsqueeze(-1)
        edges = torch.linspace(-1.0, 1.0, self.num_bins + 1, device=normalized.device)
        sigma = sigma_bins * self.bin_width
        cdf = torch.special.ndtr((edges - normalized) / sigma)
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / mass.sum(-1, keepdim=True)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin indices -> env actions at the bin centres."""
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"ActionTokenizer.detokenize: tokens must be integers, got {tokens.dtype}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.num_bins):
            raise ValueError(
                f"ActionTokenizer.detokenize: tokens must lie in [0, {self.num_bins}), got "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        self._check(tokens, "detokenize")
        return self.unnormalize(self.bin_centers[tokens.long()])

    def _check(self, x: torch.Tensor, what: str) -> torch.Tensor:
        if x.ndim == 0 or x.shape[-1] != self.action_dim:
            raise ValueError(
                f"ActionTokenizer.{what}: expected a last dimension of {self.action_dim} "
                f"(action_dim), got shape {tuple(x.shape)}"
            )
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"ActionTokenizer.{what}: actions contain NaN or inf")
        return x
