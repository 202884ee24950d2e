"""`backend="ray"`: each worker is a Ray actor hosting an :class:`EnvGroup`.

The actor keeps its own buffers for its envs and returns their rows with each answer; the front
end writes them into the vector env's buffers. With ``devices`` each actor asks Ray for a share
of a GPU (Ray sets ``CUDA_VISIBLE_DEVICES``) and renders on the EGL device of that same GPU.

Ray is joined as found: an instance this process already started, the cluster at ``ray_address``
(or ``$RAY_ADDRESS``), else a new single-machine instance that listens on loopback only and has
no dashboard (Ray's own default would listen on every interface). ``resources_per_worker``
places actors by custom node resources; ``worker_info()`` names each actor's node.

An actor that dies, alone or with its node, is reported as a :class:`WorkerDiedError` naming its
envs, as a dead subprocess worker is; ``restart_on_failure`` starts a new actor on whichever node
has the resources free then.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from vla_gym.core.deps import require
from vla_gym.vector.base import BatchedVectorEnv, WorkerHandle, common_spec, observation_slots
from vla_gym.vector.buffers import StepBuffers
from vla_gym.vector.devices import GPU_ENV_VARS, WorkerAssignment, assign_workers, egl_index_for
from vla_gym.vector.env_group import EnvGroup, GroupResult
from vla_gym.vector.errors import EnvError, VectorEnvError, WorkerDiedError, WorkerTimeoutError
from vla_gym.vector.layout import SpaceLayout

MIN_STARTUP_TIMEOUT = 300.0  # an actor may first wait for Ray to start a worker process


def init_ray(address: str | None = None) -> None:
    """Join Ray unless this process already has: the cluster at ``address`` (or
    ``$RAY_ADDRESS``), else a new local instance whose servers listen on 127.0.0.1 only."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    # Ray turns a loopback node address into the machine's network address (so that other
    # nodes could join) unless its cluster mode is off; then every server binds the loopback
    # node address. The mode is read from this constant when the node address is resolved.
    constants = importlib.import_module("ray._private.ray_constants")
    cluster_mode = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False)
    finally:
        constants.ENABLE_RAY_CLUSTER = cluster_mode


class EnvGroupActor:
    """The body of a Ray actor (wrapped with ``ray.remote`` at run time)."""

    def __init__(
        self,
        env_fns_blob: bytes,
        first_index: int,
        autoreset_mode: str,
        assignment: WorkerAssignment,
        pin_gpu: bool,
        egl_map: Mapping[int, int] | None,
    ) -> None:
        assignment.apply()  # CPU cores; GPU variables come from Ray's own assignment below
        if pin_gpu:
            import ray

            gpu = int(ray.get_gpu_ids()[0])
            egl = egl_index_for(gpu, egl_map)
            for name in ("MUJOCO_EGL_DEVICE_ID", "EGL_DEVICE_ID", "EGL_VISIBLE_DEVICES"):
                os.environ[name] = str(egl)
        self.group = EnvGroup(
            pickle.loads(env_fns_blob), first_index, AutoresetMode(autoreset_mode)
        )
        spaces = self.group.describe()
        obs_layout = SpaceLayout(spaces["observation_space"], "observation")
        act_layout = SpaceLayout(spaces["action_space"], "action")
        self.buffers = StepBuffers.allocate(obs_layout, act_layout, len(self.group.envs))
        self.group.bind(obs_layout, act_layout, self.buffers, row_offset=0)

    def describe(self) -> dict[str, Any]:
        import ray

        return {
            **self.group.describe(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "env": {name: os.environ.get(name) for name in GPU_ENV_VARS},
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
        }

    def _answer(self, run: Callable[[], GroupResult], local_ids: list[int]):
        try:
            result = run()
        except EnvError as error:  # returned, not raised: Ray would wrap it in its own type
            return error
        b = self.buffers
        return (
            result,
            [array[local_ids] for array in b.obs_slots[0]],
            b.rewards[local_ids],
            b.terminations[local_ids],
            b.truncations[local_ids],
        )

    def step(self, local_ids: list[int], actions: list[np.ndarray]):
        for array, rows in zip(self.buffers.actions, actions, strict=True):
            array[local_ids] = rows
        return self._answer(lambda: self.group.step(local_ids), local_ids)

    def reset(self, local_ids: list[int], seeds: list[int | None], options: Any):
        return self._answer(lambda: self.group.reset(local_ids, seeds, options), local_ids)

    def restart_reset(self):
        every = list(range(len(self.group.envs)))
        return self._answer(lambda: self.group.restart_reset(0), every)

    def request(self, method: str, args: tuple):
        try:
            return getattr(self.group, method)(*args)
        except EnvError as error:
            return error

    def close(self) -> None:
        self.group.close()


class RayWorker(WorkerHandle):
    def __init__(
        self,
        actor_class: Any,
        index: int,
        first_index: int,
        env_fns: Sequence[Callable[[], gym.Env]],
        autoreset_mode: AutoresetMode,
        assignment: WorkerAssignment,
        num_gpus: float,
        resources: Mapping[str, float],
        egl_map: Mapping[int, int] | None,
        step_timeout: float,
        buffers_ref: Callable[[], StepBuffers],
    ) -> None:
        super().__init__(index, first_index, len(env_fns))
        self.actor_class = actor_class
        self.init_args = (
            cloudpickle.dumps(list(env_fns)),
            first_index,
            autoreset_mode.value,
            assignment,
            num_gpus > 0,
            egl_map,
        )
        self.assignment = assignment
        self.num_gpus = num_gpus
        self.resources = dict(resources)
        self.step_timeout = step_timeout
        self.buffers = buffers_ref
        self.refs: deque = deque()
        self.spec: dict[str, Any] = {}
        self.actor = None
        self.dead = False  # killed, or found dead: never called again until restarted

    def start(self) -> Any:
        options: dict[str, Any] = {"num_gpus": self.num_gpus} if self.num_gpus else {}
        if self.resources:  # Ray places the actor on a node that has them free
            options["resources"] = self.resources
        self.actor = self.actor_class.options(**options).remote(*self.init_args)
        self.dead = False
        self.refs.clear()
        return self.actor.describe.remote()

    def await_spec(self, ref: Any) -> dict[str, Any]:
        self.spec = self._get(ref, max(self.step_timeout, MIN_STARTUP_TIMEOUT), "building its envs")
        return self.spec

    def _get(self, ref: Any, timeout: float, doing: str) -> Any:
        import ray

        try:
            value = ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise WorkerTimeoutError(
                self.index, self.env_ids, f"did not finish {doing} within {timeout:g} s"
            ) from None
        except ray.exceptions.RayActorError as error:
            # also raised while Ray cannot tell a dead actor from an unreachable one (its node
            # lost): stop it for good, like a dead subprocess worker, whatever its state
            self.kill()
            raise WorkerDiedError(self.index, self.env_ids, f"(Ray actor) died: {error}") from None
        except ray.exceptions.RayTaskError as error:
            raise VectorEnvError(
                f"worker {self.index} (envs {self.env_ids}) failed:\n{error}"
            ) from None
        if isinstance(value, EnvError):
            raise value
        return value

    def _alive_actor(self) -> Any:
        if self.dead:
            raise WorkerDiedError(self.index, self.env_ids, "is dead (an earlier failure)")
        return self.actor

    def submit_step(self, local_ids: list[int], slot: int) -> None:
        rows = [self.first_index + i for i in local_ids]
        actions = [array[rows] for array in self.buffers().actions]
        self.refs.append((local_ids, slot, self._alive_actor().step.remote(local_ids, actions)))

    def submit_reset(
        self, local_ids: list[int], seeds: list[int | None], options: Any, slot: int
    ) -> None:
        actor = self._alive_actor()
        self.refs.append((local_ids, slot, actor.reset.remote(local_ids, seeds, options)))

    @property
    def oldest_ref(self) -> Any:
        return self.refs[0][2]

    def answer_ready(self, timeout: float) -> bool:
        import ray

        ready, _ = ray.wait([self.oldest_ref], num_returns=1, timeout=timeout)
        return bool(ready)

    def fetch(self) -> GroupResult:
        local_ids, slot, ref = self.refs.popleft()
        return self._write(local_ids, slot, self._get(ref, self.step_timeout, "stepping"))

    def _write(self, local_ids: list[int], slot: int, answer: tuple) -> GroupResult:
        """Copy the actor's rows into observation slot ``slot`` and the flag arrays."""
        result, obs_rows, rewards, terminations, truncations = answer
        rows = [self.first_index + i for i in local_ids]
        b = self.buffers()
        for array, values in zip(b.obs_slots[slot], obs_rows, strict=True):
            array[rows] = values
        b.rewards[rows], b.terminations[rows], b.truncations[rows] = (
            rewards,
            terminations,
            truncations,
        )
        return result

    def request(self, method: str, *args: Any) -> Any:
        ref = self._alive_actor().request.remote(method, args)
        return self._get(ref, self.step_timeout, f"{method}()")

    def restart(self, slot: int) -> GroupResult:
        self.kill()
        self.await_spec(self.start())
        every = list(range(self.num_envs))
        answer = self._get(self.actor.restart_reset.remote(), self.step_timeout, "resetting")
        return self._write(every, slot, answer)

    def kill(self) -> None:
        import ray

        if self.actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(self.actor)
        self.dead = True
        self.refs.clear()

    def close(self) -> None:
        import ray

        if self.actor is None:
            return
        if not self.dead:  # a dead one (maybe only unreachable) is not waited for
            with contextlib.suppress(Exception):
                ray.get(self.actor.close.remote(), timeout=10)
        self.kill()
        self.actor = None

    def describe(self) -> dict[str, Any]:
        a = self.assignment
        return {
            **super().describe(),
            "backend": "ray",
            "node_id": self.spec.get("node_id"),
            "pid": self.spec.get("pid"),
            "num_gpus": self.num_gpus,
            "resources": dict(self.resources),
            "cpu_cores": list(a.cpu_cores) if a.cpu_cores is not None else None,
            "env": self.spec.get("env", {}),
            "cpu_affinity": self.spec.get("cpu_affinity"),
        }


def check_resources(resources: Mapping[str, float] | None) -> dict[str, float]:
    """Custom Ray resources each actor asks for, e.g. ``{"sim": 1}`` for nodes started with
    ``ray start --resources='{"sim": 8}'``; CPUs and GPUs are set by the backend itself."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise ValueError(
            f"resources_per_worker must be a mapping name -> amount, got {resources!r}"
        )
    for name, amount in resources.items():
        if not isinstance(name, str) or name in ("CPU", "GPU", "memory", "object_store_memory"):
            raise ValueError(
                f"resources_per_worker: {name!r} is not a custom resource name (CPUs come one "
                "per worker, GPUs from devices=)"
            )
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount > 0:
            raise ValueError(
                f"resources_per_worker[{name!r}] must be a positive number, got {amount!r}"
            )
    return {name: float(amount) for name, amount in resources.items()}


def gpus_per_actor(num_devices: int, num_workers: int) -> float:
    """Share the named GPUs evenly: one each when there are as many GPUs as actors or more."""
    return min(1.0, num_devices / num_workers)


class RayVectorEnv(BatchedVectorEnv):
    backend = "ray"

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        *,
        envs_per_worker: int = 1,
        devices: str | Sequence[int] | None = None,
        cpu_affinity: Any = None,
        egl_device_map: Mapping[int, int] | None = None,
        autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        step_timeout: float = 300.0,
        restart_on_failure: bool = False,
        ray_address: str | None = None,
        resources_per_worker: Mapping[str, float] | None = None,
    ) -> None:
        ray = require("ray", extra="ray", what="backend='ray'")
        super().__init__()
        self.closed = True  # until fully built
        resources = check_resources(resources_per_worker)
        init_ray(ray_address)
        actor_class = ray.remote(num_cpus=1)(EnvGroupActor)
        num_envs = len(env_fns)
        slices = [
            (first, env_fns[first : first + envs_per_worker])
            for first in range(0, num_envs, envs_per_worker)
        ]
        assignments = assign_workers(len(slices), None, cpu_affinity)
        num_gpus = 0.0
        if devices is not None:
            from vla_gym.vector.devices import parse_index_list

            num_gpus = gpus_per_actor(len(parse_index_list(devices, "devices")), len(slices))
        workers = [
            RayWorker(
                actor_class,
                w,
                first,
                fns,
                autoreset_mode,
                assignments[w],
                num_gpus,
                resources,
                egl_device_map,
                step_timeout,
                lambda: self.buffers,
            )
            for w, (first, fns) in enumerate(slices)
        ]
        try:
            refs = [worker.start() for worker in workers]
            specs = [worker.await_spec(ref) for worker, ref in zip(workers, refs, strict=True)]
            spec = common_spec(workers, specs)
        except BaseException:
            for worker in workers:
                worker.close()
            raise
        obs_layout = SpaceLayout(spec["observation_space"], "observation")
        act_layout = SpaceLayout(spec["action_space"], "action")
        buffers = StepBuffers.allocate(obs_layout, act_layout, num_envs, observation_slots(copy))
        self.closed = False
        self._setup(
            workers=workers,
            spec=spec,
            buffers=buffers,
            autoreset_mode=autoreset_mode,
            copy=copy,
            step_timeout=step_timeout,
            restart_on_failure=restart_on_failure,
        )

    def _wait(self, workers: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
        import ray

        by_ref = {w.oldest_ref: w for w in workers}  # type: ignore[attr-defined]
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:  # and whatever else is already done
            more, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
            ready = list(dict.fromkeys([*ready, *more]))
        return [by_ref[ref] for ref in ready]
