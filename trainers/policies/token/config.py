"""Settings of the action-token VLA policy (OpenVLA / OpenVLA-OFT style).

Network sizes come from a ``size`` preset (``"cpu"``: trains on a 2-core machine; ``"gpu"``: the
BEHAVIOR/LIBERO scale); any size left at ``None`` and any key missing from ``encoder`` takes the
preset's value, so a YAML config only lists what differs::

    policy: {name: token, size: gpu, decoding: parallel, encoder: {image_size: 128}}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainers.policies.encoders import EncoderConfig

SIZE_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "encoder": {
            "dim": 64,
            "image_size": 64,
            "image_channels": (16, 32, 64),
            "image_grid": 2,
            "state_hidden": 64,
        },
        "fusion_layers": 1,
        "decoder_layers": 2,
        "num_heads": 4,
        "value_hidden": 128,
    },
    "gpu": {
        "encoder": {
            "dim": 512,
            "image_size": 224,
            "image_channels": (64, 128, 256, 512),
            "image_grid": 8,
            "state_hidden": 512,
        },
        "fusion_layers": 4,
        "decoder_layers": 6,
        "num_heads": 8,
        "value_hidden": 512,
    },
}
DECODINGS = ("parallel", "autoregressive")


@dataclass
class TokenConfig:
    size: str = "cpu"  # network-size preset: cpu | gpu
    # Action tokens
    num_bins: int = 256  # uniform bins per action dimension
    normalization: str = "quantile"  # quantile (q01/q99, OpenVLA) | meanstd | none
    quantiles: list[float] = field(default_factory=lambda: [0.01, 0.99])
    std_range: float = 3.0  # meanstd: mean +- std_range * std maps onto the bins
    # parallel: every token of a chunk in one pass (OpenVLA-OFT); autoregressive: token by token
    decoding: str = "parallel"
    # Sampling: training rollouts draw from softmax(top_k(logits / temperature)); log-probs and
    # entropies are those of that distribution. Evaluation (act(deterministic=True)) is greedy when
    # eval_temperature is 0, else it samples at eval_temperature (OpenVLA evaluates at 0.6).
    temperature: float = 1.0
    top_k: int = 50  # 0: no filter
    eval_temperature: float = 0.0
    # Network (None / missing encoder keys: from the size preset)
    encoder: dict[str, Any] = field(default_factory=dict)  # EncoderConfig fields
    fusion_layers: int | None = None  # self-attention layers over the observation tokens
    decoder_layers: int | None = None  # action-query layers (self- + cross-attention)
    num_heads: int | None = None
    mlp_ratio: int = 4
    value_hidden: int | None = None
    detach_value_features: bool = False  # value head does not shape the shared features
    # SFT
    label_smoothing: float = 0.0
    # > 0: cross-entropy against a Gaussian over the bins (std in bin widths) centred on the
    # demonstrated action instead of its one-hot token (HL-Gauss); 0: one-hot tokens
    label_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.size not in SIZE_PRESETS:
            raise ValueError(f"policy.size must be one of {list(SIZE_PRESETS)}, got {self.size!r}")
        preset = SIZE_PRESETS[self.size]
        for name in ("fusion_layers", "decoder_layers", "num_heads", "value_hidden"):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, preset[name])
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"policy.{name} must be a non-negative integer, got {value!r}")
        known = {f.name for f in dataclasses.fields(EncoderConfig)}
        unknown = sorted(set(self.encoder) - known)
        if unknown:
            raise ValueError(
                f"policy.encoder: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        if self.num_bins < 2:
            raise ValueError(f"policy.num_bins must be at least 2, got {self.num_bins}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"policy.decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if len(self.quantiles) != 2:
            raise ValueError(f"policy.quantiles must be [low, high], got {self.quantiles!r}")
        if self.temperature <= 0:
            raise ValueError(f"policy.temperature must be > 0 for training, got {self.temperature}")
        if self.eval_temperature < 0:
            raise ValueError(f"policy.eval_temperature must be >= 0, got {self.eval_temperature}")
        if self.label_sigma < 0:
            raise ValueError(f"policy.label_sigma must be >= 0, got {self.label_sigma}")
        if self.top_k < 0:
            raise ValueError(f"policy.top_k must be >= 0 (0: no filter), got {self.top_k}")
        if self.num_heads < 1 or self.decoder_layers < 1:
            raise ValueError("policy.num_heads and policy.decoder_layers must be >= 1")
        dim = self.encoder_config().dim
        if dim % self.num_heads:
            raise ValueError(f"policy.encoder.dim ({dim}) must be divisible by num_heads")

    def encoder_config(self) -> EncoderConfig:
        settings = {**SIZE_PRESETS[self.size]["encoder"], **self.encoder}
        if "image_channels" in settings:
            settings["image_channels"] = tuple(settings["image_channels"])
        return EncoderConfig(**settings)

    @classmethod
    def cpu(cls, **overrides: Any) -> TokenConfig:
        return cls(size="cpu", **overrides)

    @classmethod
    def gpu(cls, **overrides: Any) -> TokenConfig:
        return cls(size="gpu", **overrides)
