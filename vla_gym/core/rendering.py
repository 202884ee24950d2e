"""Headless rendering set-up and the fast/full render-quality switch.

On a CPU (Mesa llvmpipe) shadow maps and multisampling dominate the cost of a frame, so
``render_quality="fast"`` turns them (and reflections) off. ``"auto"`` picks ``"full"`` only when
a GPU is visible.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

RENDER_QUALITIES = ("fast", "full")


def configure_headless_gl() -> None:
    """Pick an offscreen GL backend before MuJoCo/PyOpenGL are imported (no-op if already set)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    backend = os.environ.get("MUJOCO_GL")
    if backend in ("egl", "osmesa") and "PYOPENGL_PLATFORM" not in os.environ:
        os.environ["PYOPENGL_PLATFORM"] = backend


@lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when an NVIDIA GPU is visible to this process (no CUDA import needed)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def resolve_render_quality(quality: str | None) -> str:
    """Map ``"auto"``/``None`` to ``"full"`` on a GPU machine and ``"fast"`` elsewhere."""
    if quality in (None, "auto"):
        return "full" if gpu_available() else "fast"
    if quality not in RENDER_QUALITIES:
        raise ValueError(f"render_quality must be 'fast', 'full' or 'auto', got {quality!r}")
    return quality
