"""`make_vec`: the one entry point to every backend, and Gymnasium's ``vector_entry_point``."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode

from vla_gym.vector.base import BatchedVectorEnv

BACKENDS = ("subproc", "sync", "ray")
DEFAULT_STEP_TIMEOUT = 300.0  # seconds; generous for slow simulators, still bounded
# microseconds a subproc worker polls for its next command (see worker.CommandWaiter): covers
# the parent's turnaround in a tight step loop, far below a policy's inference time
DEFAULT_SPIN_US = 200.0


def parse_autoreset_mode(mode: str | AutoresetMode) -> AutoresetMode:
    """An ``AutoresetMode``, its value (``"NextStep"``) or name (``"next_step"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    for candidate in AutoresetMode:
        if str(mode) in (candidate.value, candidate.name) or str(mode).upper() == candidate.name:
            return candidate
    names = [m.name for m in AutoresetMode]
    raise ValueError(f"autoreset_mode must be one of {names} (or AutoresetMode), got {mode!r}")


def resolve_env_id(env_id: str) -> str:
    """The ID of ``"module:ID"`` (the form ``gym.make`` accepts), once ``module`` (which
    registers it) is imported; a plain ID as it is."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(
                f"env_id {env_id!r}: module {module!r} could not be imported ({exc})"
            ) from exc
    return name


def _env_fn(env_id: str | Callable[..., gym.Env], env_kwargs: dict) -> Callable[[], gym.Env]:
    if isinstance(env_id, str):
        # Resolve the ID here: an ID registered at run time in this process is unknown to a
        # freshly started worker, while its spec (entry point + kwargs) travels fine.
        return functools.partial(gym.make, gym.spec(env_id), **env_kwargs)
    if callable(env_id):
        return functools.partial(env_id, **env_kwargs) if env_kwargs else env_id
    raise TypeError(f"env_id must be a registered ID or a callable building an env, got {env_id!r}")


def make_vec(
    env_id: str | Callable[..., gym.Env],
    num_envs: int,
    *,
    backend: str = "subproc",
    envs_per_worker: int = 1,
    devices: str | Sequence[int] | None = None,
    cpu_affinity: str | Sequence[int] | Sequence[Sequence[int]] | None = None,
    autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    restart_on_failure: bool = False,
    copy: bool = True,
    start_method: str | None = None,
    egl_device_map: dict[int, int] | None = None,
    spin_us: float = DEFAULT_SPIN_US,
    ray_address: str | None = None,
    resources_per_worker: dict[str, float] | None = None,
    **env_kwargs: Any,
) -> BatchedVectorEnv:
    """A ``gymnasium.vector.VectorEnv`` of ``num_envs`` copies of ``env_id``.

    Args:
        env_id: a registered Gymnasium ID (any, not only ``VLA/...``; ``"module:ID"`` imports
            ``module`` first, as ``gym.make`` does) or a callable building one env (called with
            ``env_kwargs``; it must be picklable for the subproc backend).
        num_envs: number of envs; env ``i`` is seeded with ``seed + i`` by ``reset(seed=seed)``.
        backend: ``"subproc"`` (worker processes, images through shared memory), ``"sync"``
            (in this process) or ``"ray"`` (each worker a Ray actor).
        envs_per_worker: envs each worker hosts (stepped one after the other).
        devices: GPUs for the workers, round-robin: ``"0-3"``, ``"0,2"`` or ``[0, 2]``. Each
            worker gets ``CUDA_VISIBLE_DEVICES`` and the EGL index of the same GPU.
        cpu_affinity: pin workers to CPU cores, round-robin: ``"auto"`` (one available core
            each), ``"0-7"``, ``[0, 1]`` or a list of core lists.
        autoreset_mode: ``NEXT_STEP`` (default), ``SAME_STEP`` (final obs in
            ``infos["final_obs"]``) or ``DISABLED`` (``reset(options={"reset_mask": m})``).
        step_timeout: seconds a worker may take for one step/reset before it is reported.
        restart_on_failure: replace a failed worker, reset its envs and report them as
            truncated with ``infos["worker_restarted"]``, instead of raising.
        copy: ``True`` (default): observations you hold are never overwritten; they are the
            shared buffers themselves (no copy) whenever you no longer hold the previous ones,
            as in ``obs = envs.step(a)[0]``. ``False``: always views of one buffer, overwritten
            by the next step.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"`` (subproc).
        egl_device_map: CUDA index -> EGL index, replacing the EGL device query (tests).
        spin_us: subproc: while the caller sends each step within ``spin_us`` microseconds
            of the previous answer (a tight loop), a worker polls for its next command for up
            to twice that gap instead of sleeping, and ``step()`` polls for the answers the
            same way (waking a process costs tens of microseconds on a VM); a slower caller,
            e.g. a policy's inference, never makes them spin. ``0`` disables.
        ray_address: ray: the cluster to join (default ``$RAY_ADDRESS``); without one, and
            unless this process already joined Ray, a local instance listening on 127.0.0.1
            only is started.
        resources_per_worker: ray: custom resources each worker's actor asks for, e.g.
            ``{"sim": 1}`` to place workers only on nodes started with a ``sim`` resource;
            ``worker_info()`` gives each worker's ``node_id``.
        env_kwargs: passed to every env.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if not isinstance(envs_per_worker, int) or envs_per_worker < 1:
        raise ValueError(f"envs_per_worker must be a positive integer, got {envs_per_worker!r}")
    if step_timeout is None or step_timeout <= 0:
        raise ValueError(f"step_timeout must be a positive number of seconds, got {step_timeout!r}")
    if not isinstance(spin_us, int | float) or not 0 <= spin_us < 1e6:
        raise ValueError(f"spin_us must be a number of microseconds in [0, 1e6), got {spin_us!r}")
    for option, value in (
        ("ray_address", ray_address),
        ("resources_per_worker", resources_per_worker),
    ):
        if value is not None and backend != "ray":
            raise ValueError(f"{option}= is for backend='ray', not backend={backend!r}")
    mode = parse_autoreset_mode(autoreset_mode)
    if isinstance(env_id, str):
        env_id = resolve_env_id(env_id)
    env_fns = [_env_fn(env_id, env_kwargs)] * num_envs
    common = dict(
        autoreset_mode=mode,
        copy=copy,
        step_timeout=step_timeout,
        restart_on_failure=restart_on_failure,
    )
    if backend == "sync":
        if devices is not None or cpu_affinity is not None:
            raise ValueError(
                "devices= and cpu_affinity= pin worker processes; use backend='subproc' or "
                "'ray' (the sync backend runs in this process)"
            )
        from vla_gym.vector.sync import SyncVectorEnv

        envs: BatchedVectorEnv = SyncVectorEnv(env_fns, **common)
    elif backend == "subproc":
        from vla_gym.vector.subproc import SubprocVectorEnv

        envs = SubprocVectorEnv(
            env_fns,
            envs_per_worker=envs_per_worker,
            devices=devices,
            cpu_affinity=cpu_affinity,
            egl_device_map=egl_device_map,
            start_method=start_method,
            spin_us=spin_us,
            **common,
        )
    else:
        from vla_gym.vector.ray_backend import RayVectorEnv

        envs = RayVectorEnv(
            env_fns,
            envs_per_worker=envs_per_worker,
            devices=devices,
            cpu_affinity=cpu_affinity,
            egl_device_map=egl_device_map,
            ray_address=ray_address,
            resources_per_worker=resources_per_worker,
            **common,
        )
    if isinstance(env_id, str) and env_id in gym.registry:
        spec = gym.spec(env_id)
        envs.spec = EnvSpec(id=spec.id, entry_point=spec.entry_point, kwargs=dict(env_kwargs))
    return envs


def make_vec_entry_point(env_id: str, num_envs: int = 1, **kwargs: Any):
    """Gymnasium's ``vector_entry_point`` for every vla_gym ID.

    ``gym.make_vec(id, n, vectorization_mode="vector_entry_point", **kwargs)`` lands here with
    the registered kwargs merged with the caller's (env kwargs and make_vec options alike).
    """
    return make_vec(env_id, num_envs, **kwargs)
