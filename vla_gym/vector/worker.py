"""The worker process: builds its envs (never before the fork), then serves one-byte commands.

Protocol over a duplex pipe (a :class:`Channel`: one byte, or a kind byte and a payload):

* parent -> worker: ``STEP_ALL_COMMANDS[slot]`` (one byte: step every env, observations into
  slot ``slot``); ``STEP_SOME`` pickle((local_ids, slot));
  ``RESET`` pickle((local_ids, seeds, options, slot)); ``RESTART_RESET`` pickle(slot);
  ``REQUEST`` pickle((method, args)); ``ATTACH`` pickle((shm name, size, num_envs, slots));
  ``CLOSE``.
* worker -> parent: ``OK`` (a step/reset whose results are all in shared memory), or
  ``OK_EXTRA`` pickle(GroupResult) (infos, changed instructions, final observations), or
  ``VALUE`` pickle(value), or ``ENV_ERROR`` pickle(EnvError), or
  ``FAILURE`` pickle((summary, traceback)).
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import pickle
import select
import signal
import time
import traceback
from multiprocessing.connection import Connection

from gymnasium.vector import AutoresetMode

from vla_gym.vector.buffers import StepBuffers
from vla_gym.vector.channel import Channel
from vla_gym.vector.devices import GPU_ENV_VARS, WorkerAssignment
from vla_gym.vector.env_group import EnvGroup, GroupResult
from vla_gym.vector.errors import EnvError
from vla_gym.vector.layout import SpaceLayout
from vla_gym.vector.shared_memory import attach
from vla_gym.vector.spin import spin_until

STEP_SOME, RESET, RESTART_RESET, REQUEST, ATTACH, CLOSE = b"s", b"r", b"x", b"q", b"m", b"c"
OK, OK_EXTRA, VALUE, ENV_ERROR, FAILURE = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04"
PAYLOAD_KINDS = (
    STEP_SOME + RESET + RESTART_RESET + REQUEST + ATTACH + OK_EXTRA + VALUE + ENV_ERROR + FAILURE
)
_STEP_ALL_BASE, MAX_SLOTS = ord("0"), 8
STEP_ALL_COMMANDS = [bytes((_STEP_ALL_BASE + slot,)) for slot in range(MAX_SLOTS)]  # "0".."7"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent process dies, even while stuck in env code."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class CommandWaiter:
    """Reads the parent's next command; in a tight loop it polls first (see
    :mod:`vla_gym.vector.spin`): for up to twice the last gap between an answer and the next
    command, when that gap was under ``spin_seconds``."""

    def __init__(self, channel: Channel, spin_seconds: float) -> None:
        self.channel = channel
        self.spin_seconds = spin_seconds
        self._poll = select.poll()
        self._poll.register(channel.fd, select.POLLIN)
        self._gap = float("inf")  # seconds from the last answer to the command after it
        self._answered = 0.0

    def _readable(self) -> bool:
        return bool(self._poll.poll(0))  # also on POLLHUP: recv() then reports the parent gone

    def next_command(self) -> tuple[bytes, bytes]:
        if self._gap < self.spin_seconds and not self.channel.has_buffered():
            spin_until(self._readable, min(self.spin_seconds, 2 * self._gap))
        command = self.channel.recv()
        self._gap = time.perf_counter() - self._answered
        return command

    def answered(self) -> None:
        self._answered = time.perf_counter()


def send_result(channel: Channel, result: GroupResult) -> None:
    if result.is_plain:
        channel.send(OK)
    else:
        channel.send(OK_EXTRA, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def describe_process() -> dict:
    return {
        "pid": os.getpid(),
        "env": {name: os.environ.get(name) for name in GPU_ENV_VARS},
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }


def run_worker(
    conn: Connection,
    env_fns_blob: bytes,
    first_index: int,
    autoreset_mode: str,
    assignment: WorkerAssignment,
    crash_log: str,
    spin_seconds: float = 0.0,
) -> None:
    """Entry point of a worker process (started with forkserver or spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    assignment.apply()  # before any env (and its CUDA/EGL) is imported
    channel = Channel(conn.fileno(), PAYLOAD_KINDS)
    with open(crash_log, "w") as log:
        faulthandler.enable(log)  # a segfault's Python stack lands here for the parent to read
        try:
            waiter = CommandWaiter(channel, spin_seconds)
            _serve(waiter, env_fns_blob, first_index, AutoresetMode(autoreset_mode))
        except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
            pass  # the parent went away: nothing left to answer
        finally:
            conn.close()


def _send_failure(channel: Channel, exc: BaseException) -> None:
    if isinstance(exc, EnvError):
        channel.send(ENV_ERROR, pickle.dumps(exc))
    else:
        summary = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc))
        channel.send(FAILURE, pickle.dumps((summary, tb)))


def _serve(
    waiter: CommandWaiter,
    env_fns_blob: bytes,
    first_index: int,
    autoreset_mode: AutoresetMode,
) -> None:
    import cloudpickle  # noqa: F401  (env fns were pickled with it)

    channel = waiter.channel
    try:
        env_fns = pickle.loads(env_fns_blob)
        group = EnvGroup(env_fns, first_index, autoreset_mode)
        channel.send(VALUE, pickle.dumps({**group.describe(), **describe_process()}))
    except Exception as exc:
        _send_failure(channel, exc)
        return
    try:
        kind, payload = channel.recv()
        assert kind == ATTACH, kind
        shm_name, nbytes, num_envs, num_slots = pickle.loads(payload)
        memory = attach(shm_name, nbytes)
        obs_layout = SpaceLayout(group.envs[0].observation_space, "observation")
        act_layout = SpaceLayout(group.envs[0].action_space, "action")
        buffers = StepBuffers.allocate(
            obs_layout, act_layout, num_envs, num_slots, memoryview(memory)
        )
        group.bind(obs_layout, act_layout, buffers)
        channel.send(OK)
    except Exception as exc:
        _send_failure(channel, exc)
        return

    all_local = list(range(len(group.envs)))
    while True:
        command, payload = waiter.next_command()
        try:
            if _STEP_ALL_BASE <= command[0] < _STEP_ALL_BASE + MAX_SLOTS:
                send_result(channel, group.step(all_local, command[0] - _STEP_ALL_BASE))
            elif command == STEP_SOME:
                send_result(channel, group.step(*pickle.loads(payload)))
            elif command == RESET:
                send_result(channel, group.reset(*pickle.loads(payload)))
            elif command == RESTART_RESET:  # a replacement worker: fresh episodes
                send_result(channel, group.restart_reset(pickle.loads(payload)))
            elif command == REQUEST:
                method, args = pickle.loads(payload)
                value = getattr(group, method)(*args)
                channel.send(VALUE, pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
            elif command == CLOSE:
                group.close()
                channel.send(OK)
                return
            else:
                raise RuntimeError(f"unknown command {command!r}")
        except Exception as exc:
            _send_failure(channel, exc)
        waiter.answered()
