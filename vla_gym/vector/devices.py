"""Which GPU and CPU cores each worker gets, and the environment variables that pin them.

CUDA and EGL number the GPUs of a machine differently, so the EGL index of the GPU a worker
computes on is looked up through EGL's ``EGL_CUDA_DEVICE_NV`` device attribute (falling back to
the CUDA index, with a warning, where that query is unavailable, e.g. on Mesa).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

EGL_CUDA_DEVICE_NV = 0x323A

# Variables set for a worker pinned to a GPU: CUDA sees one device; MuJoCo, generic EGL users
# and PyBullet's EGL renderer plugin (EGL_VISIBLE_DEVICES) render on that same GPU.
GPU_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "MUJOCO_EGL_DEVICE_ID",
    "EGL_DEVICE_ID",
    "EGL_VISIBLE_DEVICES",
)


@dataclass(frozen=True)
class WorkerAssignment:
    """What one worker is given; it applies this before building its envs."""

    cuda_device: int | None = None
    egl_device: int | None = None
    cpu_cores: tuple[int, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def apply(self) -> None:
        """In the worker: export the variables and set the CPU affinity."""
        os.environ.update(self.env)
        if self.cpu_cores is not None:
            os.sched_setaffinity(0, self.cpu_cores)


def parse_index_list(spec: str | int | Sequence[int], what: str) -> list[int]:
    """``"0-3"`` -> [0, 1, 2, 3]; ``"0,2"``, ``"cuda:1"``, ``2`` or ``[0, 2]`` likewise."""
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, str):
        indices: list[int] = []
        for part in spec.replace("cuda:", "").split(","):
            part = part.strip()
            try:
                if "-" in part:
                    low, high = (int(x) for x in part.split("-"))
                    if high < low:
                        raise ValueError
                    indices.extend(range(low, high + 1))
                elif part:
                    indices.append(int(part))
            except ValueError:
                raise ValueError(
                    f"{what} must look like '0-3', '0,2' or a list of integers, got {spec!r}"
                ) from None
    else:
        indices = [int(i) for i in spec]
    if not indices or min(indices) < 0:
        raise ValueError(f"{what} must name at least one non-negative index, got {spec!r}")
    return indices


@lru_cache(maxsize=1)
def query_cuda_to_egl() -> dict[int, int]:
    """CUDA device index -> EGL device index, from EGL's device query ({} when unavailable)."""
    try:
        lib = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return {}
    get_proc = lib.eglGetProcAddress
    get_proc.restype = ctypes.c_void_p
    get_proc.argtypes = [ctypes.c_char_p]
    query_devices_ptr = get_proc(b"eglQueryDevicesEXT")
    query_attrib_ptr = get_proc(b"eglQueryDeviceAttribEXT")
    if not query_devices_ptr or not query_attrib_ptr:
        return {}
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_devices_ptr)
    query_attrib = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_ssize_t)
    )(query_attrib_ptr)
    count = ctypes.c_int(0)
    if not query_devices(0, None, ctypes.byref(count)) or count.value <= 0:
        return {}
    devices = (ctypes.c_void_p * count.value)()
    if not query_devices(count.value, devices, ctypes.byref(count)):
        return {}
    mapping: dict[int, int] = {}
    for egl_index in range(count.value):
        cuda_index = ctypes.c_ssize_t(-1)
        if query_attrib(devices[egl_index], EGL_CUDA_DEVICE_NV, ctypes.byref(cuda_index)):
            mapping[int(cuda_index.value)] = egl_index
    return mapping


def egl_index_for(cuda_device: int, egl_map: Mapping[int, int] | None = None) -> int:
    """The EGL index of CUDA device ``cuda_device`` (the CUDA index, with a warning, if unknown)."""
    mapping = query_cuda_to_egl() if egl_map is None else egl_map
    if cuda_device in mapping:
        return int(mapping[cuda_device])
    warnings.warn(
        f"EGL's device query (EGL_CUDA_DEVICE_NV) does not know CUDA device {cuda_device}; "
        f"rendering on EGL device {cuda_device}, which may be a different GPU",
        RuntimeWarning,
        stacklevel=3,
    )
    return cuda_device


def cpu_core_sets(
    cpu_affinity: str | Sequence[int] | Sequence[Sequence[int]], num_workers: int
) -> list[tuple[int, ...]]:
    """Round-robin core sets: ``"auto"`` (one available core each), ``"0-7"``, [0, 1], [[0, 1]]."""
    if cpu_affinity == "auto":
        pool = [(core,) for core in sorted(os.sched_getaffinity(0))]
    elif isinstance(cpu_affinity, (str, int)):
        pool = [(core,) for core in parse_index_list(cpu_affinity, "cpu_affinity")]
    else:
        items = list(cpu_affinity)
        if items and all(isinstance(item, (list, tuple, set)) for item in items):
            pool = [tuple(parse_index_list(list(item), "cpu_affinity")) for item in items]
        else:
            pool = [(core,) for core in parse_index_list(items, "cpu_affinity")]
    return [pool[w % len(pool)] for w in range(num_workers)]


def _cuda_visible_value(cuda_device: int) -> str:
    """The worker's CUDA_VISIBLE_DEVICES: device indices are relative to this process's own
    CUDA_VISIBLE_DEVICES when that is set (index 0 of "2,3" is GPU 2)."""
    visible = [
        v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()
    ]
    if not visible:
        return str(cuda_device)
    if cuda_device >= len(visible):
        raise ValueError(
            f"devices names CUDA device {cuda_device}, but CUDA_VISIBLE_DEVICES="
            f"{os.environ['CUDA_VISIBLE_DEVICES']!r} shows only {len(visible)} device(s)"
        )
    return visible[cuda_device]


def assign_workers(
    num_workers: int,
    devices: str | int | Sequence[int] | None = None,
    cpu_affinity: str | Sequence[int] | Sequence[Sequence[int]] | None = None,
    egl_map: Mapping[int, int] | None = None,
) -> list[WorkerAssignment]:
    """One assignment per worker: GPUs and core sets round-robin; no pinning when not asked."""
    gpus = parse_index_list(devices, "devices") if devices is not None else None
    cores = cpu_core_sets(cpu_affinity, num_workers) if cpu_affinity is not None else None
    egl_of = {gpu: egl_index_for(gpu, egl_map) for gpu in dict.fromkeys(gpus or [])}
    assignments = []
    for w in range(num_workers):
        env: dict[str, str] = {}
        cuda = egl = None
        if gpus is not None:
            cuda = gpus[w % len(gpus)]
            egl = egl_of[cuda]
            env = {
                "CUDA_VISIBLE_DEVICES": _cuda_visible_value(cuda),
                "MUJOCO_EGL_DEVICE_ID": str(egl),
                "EGL_DEVICE_ID": str(egl),
                "EGL_VISIBLE_DEVICES": str(egl),
            }
        assignments.append(WorkerAssignment(cuda, egl, cores[w] if cores else None, env))
    return assignments
