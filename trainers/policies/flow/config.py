"""Configuration of the flow-matching VLA policy (π0-style), with size presets.

``FlowConfig.from_preset("nano")`` (``policy: {name: flow, preset: nano}``) is sized for a
2-core CPU (tens of thousands of parameters per block, 64 px images); ``"small"`` for a laptop or
a single small GPU; ``"base"`` and ``"large"`` for GPUs (``"large"`` turns on bf16 autocast and
``torch.compile``, which only act on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trainers.policies.encoders import EncoderConfig

NOISE_METHODS = ("flow_sde", "flow_noise")
VALUE_HEADS = ("expert", "prefix")
TIME_SAMPLING = ("uniform", "beta")

PRESETS: dict[str, dict[str, Any]] = {
    # 2-core CPU: a few hundred thousand parameters, 4 image tokens per camera.
    "nano": dict(
        dim=64,
        image_size=64,
        image_patch=4,
        image_channels=(16, 32, 64),
        image_grid=2,
        state_hidden=64,
        prefix_layers=1,
        heads=4,
        expert_dim=64,
        expert_layers=2,
        expert_heads=4,
        value_hidden=128,
    ),
    "small": dict(),
    # Single GPU.
    "base": dict(
        dim=384,
        image_size=128,
        image_channels=(32, 64, 128, 256),
        image_grid=4,
        state_hidden=256,
        prefix_layers=6,
        heads=6,
        expert_dim=256,
        expert_layers=6,
        expert_heads=4,
        value_hidden=512,
        amp=True,
    ),
    # Multi-GPU scale (π0-like proportions: the action expert is narrower than the prefix).
    "large": dict(
        dim=768,
        image_size=224,
        image_patch=4,
        image_channels=(64, 128, 256, 512),
        image_grid=7,
        state_hidden=512,
        prefix_layers=12,
        heads=12,
        expert_dim=512,
        expert_layers=12,
        expert_heads=8,
        value_hidden=1024,
        amp=True,
        compile=True,
    ),
}


@dataclass
class FlowConfig:
    """Flow policy settings. Built from a mapping (``trainers.schema.build``), ``preset`` picks
    the starting values from :data:`PRESETS` and the other keys override them."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    preset: str = "small"  # the size preset these values started from
    # Observation encoder (see trainers/policies/encoders.py).
    dim: int = 128  # prefix token width
    image_size: int = 64
    image_patch: int = 2  # patchify stem of the image CNN
    image_channels: tuple[int, ...] = (32, 64, 128)
    image_grid: int = 4  # pooled image tokens per camera = image_grid ** 2
    image_keypoints: int = 0  # > 0: one spatial-softmax keypoint token per camera (encoders.py)
    image_coords: bool = False  # CoordConv input channels
    language: str = "auto"  # "minilm" | "hash" | "auto"
    state_hidden: int = 128
    # Prefix transformer over image / language / state tokens.
    prefix_layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    # Action expert: action-chunk tokens attending to the prefix and to each other.
    expert_dim: int = 128
    expert_layers: int = 2
    expert_heads: int = 4
    # Flow sampling (π0 convention: t = 1 noise -> t = 0 action), see docs/algorithms.md.
    denoise_steps: int = 5
    noise_method: str = "flow_sde"  # used by stochastic act(); evaluation is always the ODE
    noise_level: float = 0.5  # flow_sde's a
    noise_std_min: float = 0.08  # flow_noise's learned std bounds
    noise_std_max: float = 0.16
    # Value head: "expert" = MLP on the mean of the action-expert tokens, "prefix" = on the
    # mean of the prefix output tokens; its input is detached when value_detach is set.
    value_head: str = "expert"
    value_detach: bool = True
    value_hidden: int = 256
    # SFT: distribution of the flow time τ per example ("beta" = π0's Beta(1.5, 1) on 1 - τ,
    # emphasising noisy times).
    sft_time_sampling: str = "uniform"
    # Performance (CUDA only; ignored on CPU).
    amp: bool = False  # bf16 autocast for the network
    compile: bool = False  # torch.compile the prefix and expert

    def __post_init__(self) -> None:
        self.image_channels = tuple(int(c) for c in self.image_channels)
        if self.noise_method not in NOISE_METHODS:
            raise ValueError(
                f"noise_method must be one of {NOISE_METHODS}, got {self.noise_method!r}"
            )
        if self.value_head not in VALUE_HEADS:
            raise ValueError(f"value_head must be one of {VALUE_HEADS}, got {self.value_head!r}")
        if self.sft_time_sampling not in TIME_SAMPLING:
            raise ValueError(
                f"sft_time_sampling must be one of {TIME_SAMPLING}, got {self.sft_time_sampling!r}"
            )
        if self.denoise_steps < 1:
            raise ValueError(f"denoise_steps must be >= 1, got {self.denoise_steps}")
        if not 0 < self.noise_std_min < self.noise_std_max:
            raise ValueError(
                "need 0 < noise_std_min < noise_std_max, got "
                f"{self.noise_std_min}, {self.noise_std_max}"
            )
        if self.noise_level <= 0:
            raise ValueError(f"noise_level must be > 0, got {self.noise_level}")
        for name, width, heads in (
            ("dim", self.dim, self.heads),
            ("expert_dim", self.expert_dim, self.expert_heads),
        ):
            if width % heads:
                raise ValueError(f"{name}={width} is not divisible by its head count {heads}")

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            dim=self.dim,
            image_size=self.image_size,
            image_patch=self.image_patch,
            image_channels=self.image_channels,
            image_grid=self.image_grid,
            image_keypoints=self.image_keypoints,
            image_coords=self.image_coords,
            language=self.language,
            state_hidden=self.state_hidden,
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> FlowConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown flow policy preset {name!r}; choose from {list(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})
