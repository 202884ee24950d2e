"""Component placement: which device the env workers, the rollout policy and the actor use.

RLinf-style ``cluster.component_placement`` entries: ``"cpu"``, ``"cuda:N"``, a GPU index
``"N"``, a range ``"0-3"``, a list ``"0,2"`` or ``"all"`` (every visible GPU). The env entry is
handed to ``vla_gym.make_vec(devices=...)``, which pins one GPU per worker; the rollout and actor
components run in this process on the first GPU of their entry.
"""

from __future__ import annotations

import torch


def parse_devices(spec: str | int | None) -> list[str]:
    """``"cpu"`` -> ``["cpu"]``; ``"0-1"`` -> ``["cuda:0", "cuda:1"]``; ``"all"`` -> every GPU."""
    if spec is None:
        return ["cpu"]
    text = str(spec).strip().lower()
    if text in ("", "cpu"):
        return ["cpu"]
    if text == "all":
        count = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if text.startswith("cuda"):
        index = text.partition(":")[2] or "0"
        if not index.isdigit():
            raise ValueError(f"bad device {spec!r}; use cpu, cuda:N, N, A-B or all")
        return [f"cuda:{index}"]
    indices: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"bad device {spec!r}; use cpu, cuda:N, N, A-B or all")
        start, stop = int(low), int(high) if dash else int(low)
        if stop < start:
            raise ValueError(f"bad device range {spec!r}: {stop} < {start}")
        indices.extend(range(start, stop + 1))
    return [f"cuda:{i}" for i in indices]


def torch_device(spec: str | int | None) -> torch.device:
    """The device a component in this process uses: the first of its entry.

    A GPU entry on a machine without CUDA is an error (not a silent CPU fallback).
    """
    device = torch.device(parse_devices(spec)[0])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"placement asks for {device} but CUDA is not available")
    return device


def env_devices(spec: str | int | None) -> str | None:
    """The ``devices`` argument of ``vla_gym.make_vec``: None on CPU, else GPU indices."""
    devices = parse_devices(spec)
    if devices == ["cpu"]:
        return None
    return ",".join(device.split(":")[1] for device in devices)
