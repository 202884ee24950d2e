"""`backend="subproc"`: envs in worker processes, results in shared memory, one-byte signals."""

from __future__ import annotations

import contextlib
import glob
import math
import multiprocessing as mp
import os
import pickle
import select
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import gymnasium as gym
from gymnasium.vector import AutoresetMode

from vla_gym.vector import worker as protocol
from vla_gym.vector.base import BatchedVectorEnv, WorkerHandle, common_spec, observation_slots
from vla_gym.vector.buffers import StepBuffers
from vla_gym.vector.channel import Channel
from vla_gym.vector.devices import WorkerAssignment, assign_workers
from vla_gym.vector.env_group import GroupResult
from vla_gym.vector.errors import (
    VectorEnvError,
    WorkerDiedError,
    WorkerTimeoutError,
)
from vla_gym.vector.layout import SpaceLayout
from vla_gym.vector.shared_memory import SharedBlock
from vla_gym.vector.spin import spin_until

CLOSE_GRACE = 10.0  # seconds a worker gets to close its envs before it is killed
MIN_STARTUP_TIMEOUT = 120.0  # building a simulator (and its renderer) can take a while
# worker crash logs: <tmp>/vla_gym_<parent pid>_worker<index>_<random>.log
CRASH_LOG_PREFIX = "vla_gym_"


def remove_orphaned_crash_logs() -> None:
    """Empty crash logs of parents that are gone (killed before ``close()`` could remove them);
    a log with a crash's stack is left alone."""
    pattern = os.path.join(tempfile.gettempdir(), f"{CRASH_LOG_PREFIX}*_worker*_*.log")
    for path in glob.glob(pattern):
        pid = os.path.basename(path)[len(CRASH_LOG_PREFIX) :].split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0:
                    os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def default_start_method() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def _exit_reason(process: mp.process.BaseProcess) -> str:
    process.join(timeout=1.0)
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"died from signal {signal.Signals(-code).name}"
        return f"died from signal {-code}"
    return f"exited with code {code}"


class WorkerPoller:
    """One ``poll`` set over every worker's pipe and process sentinel, kept across steps
    (building a selector per wait, as ``multiprocessing.connection.wait`` does, costs more than
    a whole null-env step)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._owner: dict[int, SubprocWorker] = {}

    def add(self, worker: SubprocWorker) -> None:
        for fd in (worker.conn.fileno(), worker.process.sentinel):
            self._poll.register(fd, select.POLLIN)
            self._owner[fd] = worker

    def remove(self, worker: SubprocWorker) -> None:
        for fd in [fd for fd, owner in self._owner.items() if owner is worker]:
            self._poll.unregister(fd)
            del self._owner[fd]

    def ready(self, timeout: float) -> list[SubprocWorker]:
        events = self._poll.poll(max(0, math.ceil(timeout * 1000)))
        return list(dict.fromkeys(self._owner[fd] for fd, _ in events if fd in self._owner))


class SubprocWorker(WorkerHandle):
    """Parent side of one worker process."""

    def __init__(
        self,
        ctx: mp.context.BaseContext,
        index: int,
        first_index: int,
        env_fns: Sequence[Callable[[], gym.Env]],
        autoreset_mode: AutoresetMode,
        assignment: WorkerAssignment,
        step_timeout: float,
        poller: WorkerPoller,
        spin_seconds: float = 0.0,
    ) -> None:
        super().__init__(index, first_index, len(env_fns))
        self.ctx = ctx
        self.poller = poller
        self.env_fns_blob = cloudpickle.dumps(list(env_fns))
        self.autoreset_mode = autoreset_mode
        self.assignment = assignment
        self.step_timeout = step_timeout
        self.spin_seconds = spin_seconds
        self.startup_timeout = max(step_timeout, MIN_STARTUP_TIMEOUT)
        self.shm: tuple[str, int, int] | None = None
        self.process: mp.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.spec: dict[str, Any] = {}
        self.dead = False
        self._plain_all = GroupResult(list(range(self.num_envs)), [{}] * self.num_envs)
        self._submitted: deque[list[int]] = deque()  # local ids of unanswered steps/resets
        self.crash_log = ""  # made by start(): one per worker process
        self.crash_log_kept = False  # a dead worker's stack: left for the user to read

    def _new_crash_log(self) -> None:
        """A fresh, empty crash log; the previous one goes unless it holds a crash's stack."""
        if self.crash_log and not self.crash_log_kept:
            with contextlib.suppress(OSError):
                os.unlink(self.crash_log)
        prefix = f"{CRASH_LOG_PREFIX}{os.getpid()}_worker{self.index}_"
        fd, self.crash_log = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
        self.crash_log_kept = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._new_crash_log()
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        self.process = self.ctx.Process(
            target=protocol.run_worker,
            args=(
                child_conn,
                self.env_fns_blob,
                self.first_index,
                self.autoreset_mode.value,
                self.assignment,
                self.crash_log,
                self.spin_seconds,
            ),
            name=f"vla_gym-worker-{self.index}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()  # so a dead worker shows as EOF on our end
        self.conn = parent_conn  # keeps the socket open; all I/O goes through the channel
        self.channel = Channel(parent_conn.fileno(), protocol.PAYLOAD_KINDS)
        self.dead = False
        self.poller.add(self)
        self.own_poll = select.poll()  # this worker alone: its answer, or its death
        for fd in (self.conn.fileno(), self.process.sentinel):
            self.own_poll.register(fd, select.POLLIN)

    def await_spec(self) -> dict[str, Any]:
        """The worker's spaces, metadata and process facts, once its envs are built."""
        self.spec = self._answer(self.startup_timeout, "building its envs")
        return self.spec

    def attach(self, shm_name: str, nbytes: int, num_envs: int, num_slots: int) -> None:
        self.shm = (shm_name, nbytes, num_envs, num_slots)
        self._send(protocol.ATTACH, pickle.dumps(self.shm))

    def await_attached(self) -> None:
        self._answer(self.startup_timeout, "mapping shared memory")

    # ------------------------------------------------------------ requests
    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        if self.dead:
            raise WorkerDiedError(self.index, self.env_ids, "is dead (an earlier failure)")
        try:
            self.channel.send(kind, payload)
        except OSError:  # broken pipe, connection reset
            self.dead = True
            raise WorkerDiedError(self.index, self.env_ids, self._death_report()) from None

    def submit_step(self, local_ids: list[int], slot: int) -> None:
        if len(local_ids) == self.num_envs:
            self._send(protocol.STEP_ALL_COMMANDS[slot])
        else:
            self._send(protocol.STEP_SOME, pickle.dumps((local_ids, slot)))
        self._submitted.append(local_ids)

    def submit_reset(
        self, local_ids: list[int], seeds: list[int | None], options: Any, slot: int
    ) -> None:
        self._send(protocol.RESET, pickle.dumps((local_ids, seeds, options, slot)))
        self._submitted.append(local_ids)

    def fetch(self) -> GroupResult:
        local_ids = self._submitted.popleft()
        kind, payload = self._receive()
        result = None if kind == protocol.OK else self._decode(kind, payload)
        if result is None:  # everything is in shared memory already
            if len(local_ids) == self.num_envs:
                return self._plain_all  # shared, never modified
            return GroupResult(local_ids, [{}] * len(local_ids))
        return result

    # the front end's lean path for stepping every env (no per-request bookkeeping)
    def send_step_all(self, slot: int) -> None:
        self._send(protocol.STEP_ALL_COMMANDS[slot])

    def receive_step_all(self) -> GroupResult:
        """The answer to ``send_step_all`` (call once the worker is ready)."""
        kind, payload = self._receive()
        return self._plain_all if kind == protocol.OK else self._decode(kind, payload)

    def owe_step_all(self) -> None:
        """``send_step_all`` went out and its answer will be read with ``fetch`` after all."""
        self._submitted.append(self._plain_all.local_ids)

    def request(self, method: str, *args: Any) -> Any:
        self._send(protocol.REQUEST, pickle.dumps((method, args)))
        return self._answer(self.step_timeout, f"{method}()")

    # ------------------------------------------------------------ answers
    def _receive(self) -> tuple[bytes, bytes]:
        try:
            return self.channel.recv()
        except (EOFError, OSError):
            self.dead = True
            raise WorkerDiedError(self.index, self.env_ids, self._death_report()) from None

    def _decode(self, kind: bytes, payload: bytes) -> Any:
        if kind == protocol.OK:
            return None
        if kind in (protocol.OK_EXTRA, protocol.VALUE):
            return pickle.loads(payload)
        if kind == protocol.ENV_ERROR:
            raise pickle.loads(payload)
        summary, tb = pickle.loads(payload)
        raise VectorEnvError(
            f"worker {self.index} (envs {self.env_ids}) failed: {summary}\n\n"
            f"Traceback in the worker:\n{tb}"
        )

    def _answer(self, timeout: float, doing: str) -> Any:
        """Wait (bounded) for one answer, noticing a worker that dies meanwhile."""
        if self.dead:
            raise WorkerDiedError(self.index, self.env_ids, "is dead (an earlier failure)")
        if not self.channel.has_buffered() and not self.answer_ready(timeout):
            self.kill()
            raise WorkerTimeoutError(
                self.index,
                self.env_ids,
                f"did not finish {doing} within {timeout:g} s; it was killed",
            )
        return self._decode(*self._receive())

    def answer_ready(self, timeout: float) -> bool:
        """Whether an answer (or the worker's death, seen as end of file) can be read now."""
        if self.channel.has_buffered():
            return True
        return bool(self.own_poll.poll(max(0, math.ceil(timeout * 1000))))

    def _death_report(self, doing: str = "its work") -> str:
        reason = _exit_reason(self.process) if self.process is not None else "never started"
        report = f"{reason} during {doing}"
        with contextlib.suppress(OSError):
            with open(self.crash_log) as log:
                crash = log.read().strip()
            if crash:
                self.crash_log_kept = True
                report += (
                    f"\n\nThe worker's last Python stack (faulthandler, kept in "
                    f"{self.crash_log}):\n{crash}"
                )
        return report

    # ------------------------------------------------------------ failure & shutdown
    def restart(self, slot: int) -> GroupResult:
        self.kill()
        self._close_conn()
        self._submitted.clear()
        self.start()
        self.await_spec()
        self.attach(*self.shm)
        self.await_attached()
        self._send(protocol.RESTART_RESET, pickle.dumps(slot))
        result = self._answer(self.step_timeout, "resetting its envs after a restart")
        assert isinstance(result, GroupResult)
        return result

    def kill(self) -> None:
        self.poller.remove(self)
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)
        self.dead = True

    def _close_conn(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.poller.remove(self)
        if self.process is not None and not self.dead and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.channel.send(protocol.CLOSE)
            self.process.join(timeout=CLOSE_GRACE)
        self.kill()
        if self.process is not None:
            with contextlib.suppress(ValueError):
                self.process.close()
            self.process = None
        self._close_conn()
        if self.crash_log and not self.crash_log_kept:
            with contextlib.suppress(OSError):
                os.unlink(self.crash_log)

    def describe(self) -> dict[str, Any]:
        a = self.assignment
        return {
            **super().describe(),
            "backend": "subproc",
            "pid": self.spec.get("pid"),
            "cuda_device": a.cuda_device,
            "egl_device": a.egl_device,
            "cpu_cores": list(a.cpu_cores) if a.cpu_cores is not None else None,
            "env": self.spec.get("env", {}),  # as the worker saw them
            "cpu_affinity": self.spec.get("cpu_affinity"),  # as the worker saw it
        }


class SubprocVectorEnv(BatchedVectorEnv):
    """Each worker process hosts ``envs_per_worker`` envs and writes into shared memory."""

    backend = "subproc"

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        *,
        envs_per_worker: int = 1,
        devices: str | Sequence[int] | None = None,
        cpu_affinity: Any = None,
        egl_device_map: Mapping[int, int] | None = None,
        start_method: str | None = None,
        autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        step_timeout: float = 300.0,
        restart_on_failure: bool = False,
        spin_us: float = 0.0,
    ) -> None:
        super().__init__()
        self.closed = True  # until fully built: close() must not touch half-made state
        remove_orphaned_crash_logs()
        num_envs = len(env_fns)
        slices = [
            (first, env_fns[first : first + envs_per_worker])
            for first in range(0, num_envs, envs_per_worker)
        ]
        assignments = assign_workers(len(slices), devices, cpu_affinity, egl_device_map)
        ctx = mp.get_context(start_method or default_start_method())
        if ctx.get_start_method() == "forkserver":
            # workers fork from a server that already imported numpy, gymnasium and this
            # package (no simulator, no CUDA/EGL: those are only imported by the envs)
            ctx.set_forkserver_preload(["vla_gym.vector.worker"])
        self._poller = WorkerPoller()
        self._spin_seconds = spin_us * 1e-6
        self._last_wait = 0.0  # seconds the last lean step waited for its answers
        workers = [
            SubprocWorker(
                ctx,
                w,
                first,
                fns,
                autoreset_mode,
                assignments[w],
                step_timeout,
                self._poller,
                spin_seconds=self._spin_seconds,
            )
            for w, (first, fns) in enumerate(slices)
        ]
        self._block: SharedBlock | None = None
        try:
            for worker in workers:
                worker.start()
            spec = common_spec(workers, [worker.await_spec() for worker in workers])
            obs_layout = SpaceLayout(spec["observation_space"], "observation")
            act_layout = SpaceLayout(spec["action_space"], "action")
            slots = observation_slots(copy)
            nbytes = StepBuffers.nbytes(obs_layout, act_layout, num_envs, slots)
            self._block = SharedBlock.create(nbytes)
            buffers = StepBuffers.allocate(obs_layout, act_layout, num_envs, slots, self._block.buf)
            for worker in workers:
                worker.attach(self._block.name, nbytes, num_envs, slots)
            for worker in workers:
                worker.await_attached()
        except BaseException:
            for worker in workers:
                worker.close()
            if self._block is not None:
                self._block.close()
            raise
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

    def _step_all(self, actions: Any) -> tuple[list[tuple[int, GroupResult]], Exception | None]:
        """Step every env, the hot loop of training: a byte to each worker, then the answers,
        last-submitted first (see ``_collect_all``). Unlike the general path it records no
        request unless something goes wrong; failures are then handled exactly as there."""
        workers = self.workers
        if self._restarted or any(worker.dead for worker in workers):
            return super()._step_all(actions)
        self._write_actions(actions, None)
        deadline = time.monotonic() + self.step_timeout
        owed = 0  # workers[:owed] were sent the step and still owe its answer
        try:
            for worker in workers:
                worker.send_step_all(self._slot)
                owed += 1
        except WorkerDiedError as error:  # rare: hand the step over to the general path
            for worker in workers[:owed]:
                self._owe_step_all(worker, deadline)
            errors = [self._submit_failed(workers[owed], error)]
            for worker, local_ids in self._all_targets[owed + 1 :]:
                errors.append(self._submit(worker, "step", local_ids, deadline))
            return self._collect_all(), next((e for e in errors if e is not None), None)
        except BaseException:  # e.g. Ctrl-C: leave the sent steps for recv()
            for worker in workers[:owed]:
                self._owe_step_all(worker, deadline)
            raise
        results: list[tuple[int, GroupResult]] = []
        errors: list[Exception] = []
        owing = {worker.index: worker for worker in workers}
        try:
            while owing:
                # await the last-submitted worker; by then most others have answered too, and
                # one poll of the whole set finds them (cheaper than a wait per worker)
                last = owing[next(reversed(owing))]
                ready = [last] if self._await_answer(last, deadline) else []
                if ready and len(owing) > 1:
                    ready += [
                        w for w in self._poller.ready(0.0) if w is not last and w.index in owing
                    ]
                for worker in ready:
                    try:
                        results.append((worker.index, worker.receive_step_all()))
                    except VectorEnvError as error:  # EnvError, a death, a worker failure
                        self._fail_step_all(worker, error, deadline, results, errors)
                    del owing[worker.index]
                if not ready:  # no answer within step_timeout
                    self._fail_step_all(last, None, deadline, results, errors)
                    del owing[last.index]
        except BaseException:  # e.g. Ctrl-C: recv() gets the answers still owed
            for worker in owing.values():
                self._owe_step_all(worker, deadline)
            raise
        if errors:
            raise errors[0]
        return results, None

    def _await_answer(self, worker: SubprocWorker, deadline: float) -> bool:
        """Whether ``worker`` answered by ``deadline``; in a tight loop (the last step's answers
        came within the spin window) it polls first, as the workers do (:mod:`.spin`)."""
        start = time.perf_counter()
        if self._last_wait < self._spin_seconds:
            window = min(self._spin_seconds, 2 * self._last_wait)
            if spin_until(lambda: worker.answer_ready(0.0), window):
                self._last_wait = time.perf_counter() - start
                return True
        ready = worker.answer_ready(max(0.0, deadline - time.monotonic()))
        self._last_wait = time.perf_counter() - start
        return ready

    def _fail_step_all(
        self,
        worker: SubprocWorker,
        error: VectorEnvError | None,
        deadline: float,
        results: list,
        errors: list,
    ) -> None:
        """A step sent by ``_step_all`` failed (``error``) or timed out (``None``)."""
        self._track(worker, "step", self._all_targets[worker.index][1], deadline)
        self._fail(worker, error or self._timeout_error(worker), results, errors)

    def _owe_step_all(self, worker: SubprocWorker, deadline: float) -> None:
        """Record a step sent by ``_step_all`` as the general path would have."""
        self._track(worker, "step", self._all_targets[worker.index][1], deadline)
        worker.owe_step_all()

    def _wait(self, workers: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
        if len(workers) == 1:
            (worker,) = workers
            assert isinstance(worker, SubprocWorker)
            return [worker] if worker.answer_ready(timeout) else []
        buffered = [w for w in workers if w.channel.has_buffered()]
        if buffered:
            return buffered
        deadline = time.monotonic() + timeout
        while True:
            ready = self._poller.ready(timeout)
            hits = [w for w in ready if w in workers]
            idle = [w for w in ready if not self._pending[w.index]]
            for worker in idle:  # an idle worker that became readable has died: forget it
                worker.kill()
            timeout = deadline - time.monotonic()
            if hits or not idle or timeout <= 0:
                return hits

    def _release_memory(self) -> None:
        if getattr(self, "buffers", None) is not None:
            self.buffers.release()
        if self._block is not None:
            self._block.close()
            self._block = None
