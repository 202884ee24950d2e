"""Failures of subprocess workers: clear errors within the timeout, restarts, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from test_vector_helpers import FaultyEnv, ImageEnv

from vla_gym.vector import EnvError, WorkerDiedError, WorkerTimeoutError, make_vec

ZERO = np.zeros((4, 2), np.float32)


def shm_segments(pid: int) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"vla_gym_{pid}_*"))


def worker_pids(envs) -> list[int]:
    return [info["pid"] for info in envs.worker_info()]


def is_running(pid: int) -> bool:
    """True while `pid` is a live, non-zombie process (it may exit between any two calls)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if is_running(p)]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes still alive: {alive}")


def test_killed_worker_is_reported_with_its_envs():
    envs = make_vec(ImageEnv, 4, envs_per_worker=2, step_timeout=20)
    try:
        envs.reset(seed=0)
        victim = worker_pids(envs)[1]
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(
            WorkerDiedError, match=r"worker 1 \(envs \[2, 3\]\) died from signal SIGKILL"
        ):
            envs.step(ZERO)
        assert time.monotonic() - start < 5
        with pytest.raises(WorkerDiedError, match="worker 1"):  # stays reported, never hangs
            envs.step(ZERO)
    finally:
        envs.close()


def test_segfault_is_reported_with_the_python_stack():
    envs = make_vec(FaultyEnv, 2, fault="segfault", faulty_seed=1, step_timeout=20)
    try:
        envs.reset(seed=0)
        envs.step(ZERO[:2])
        with pytest.raises(WorkerDiedError) as caught:
            envs.step(ZERO[:2])
        message = str(caught.value)
        assert "worker 1 (envs [1])" in message and "SIGSEGV" in message
        assert "test_vector_helpers.py" in message  # faulthandler's stack of the crash
        assert caught.value.env_indices == [1]
    finally:
        envs.close()


def test_hung_worker_times_out_and_is_killed():
    envs = make_vec(FaultyEnv, 2, fault="hang", faulty_seed=0, step_timeout=1.5)
    try:
        envs.reset(seed=0)
        pid = worker_pids(envs)[0]
        envs.step(ZERO[:2])
        start = time.monotonic()
        with pytest.raises(WorkerTimeoutError, match=r"worker 0 \(envs \[0\]\) did not answer"):
            envs.step(ZERO[:2])
        elapsed = time.monotonic() - start
        assert 1.4 < elapsed < 4.0
        assert_gone([pid])
    finally:
        envs.close()


def test_env_exception_in_worker_leaves_the_others_usable():
    envs = make_vec(FaultyEnv, 2, fault="raise", faulty_seed=1)
    try:
        envs.reset(seed=0)
        envs.step(ZERO[:2])
        with pytest.raises(EnvError, match="env 1 raised ValueError: boom"):
            envs.step(ZERO[:2])
        # the worker survived the exception; the next step goes on (step 3 no longer raises)
        _, rewards, *_ = envs.step(ZERO[:2])
        assert rewards.shape == (2,)
    finally:
        envs.close()


def test_an_interrupted_step_leaves_the_answers_still_owed_to_recv():
    envs = make_vec(FaultyEnv, 4, fault="slow", faulty_seed=0, step_timeout=20)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        envs.reset(seed=0)
        envs.step(ZERO)
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # env 0 takes 1 s over its second step
        with pytest.raises(KeyboardInterrupt):
            envs.step(ZERO)
        with pytest.raises(RuntimeError, match=r"envs \[0\] have results in flight"):
            envs.step(ZERO)
        _, rewards, *_, infos = envs.recv()
        assert infos["env_id"].tolist() == [0] and rewards.shape == (1,)
        _, _, _, _, infos = envs.step(ZERO)  # in step again: the next step of every env
        assert infos["t"].tolist() == [3, 3, 3, 3]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        envs.close()


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_restart_on_failure_replaces_the_worker_and_resets_its_envs(fault):
    envs = make_vec(
        FaultyEnv,
        4,
        envs_per_worker=2,
        fault="hang" if fault == "hang" else "none",
        faulty_seed=2,
        step_timeout=1.5,
        restart_on_failure=True,
    )
    try:
        envs.reset(seed=0)
        envs.step(ZERO)
        old = worker_pids(envs)
        if fault == "kill":
            os.kill(old[1], signal.SIGKILL)
        with pytest.warns(RuntimeWarning, match=r"restarting worker 1; envs \[2, 3\] are reset"):
            obs, rewards, terminations, truncations, infos = envs.step(ZERO)
        assert infos["worker_restarted"].tolist() == [False, False, True, True]
        assert truncations.tolist() == [False, False, True, True]
        assert rewards[2:].tolist() == [0.0, 0.0]
        assert infos["phase"][2:].tolist() == ["reset", "reset"]  # fresh episodes
        new = worker_pids(envs)
        assert new[0] == old[0] and new[1] != old[1]
        assert_gone([old[1]])
        # NEXT_STEP: the truncated envs are reset by the next step, then all step normally
        _, _, _, _, infos = envs.step(ZERO)
        assert infos["_t"].tolist() == [True, True, False, False]
        _, _, _, truncations, infos = envs.step(ZERO)
        assert infos["_t"].all() and not truncations.any()
    finally:
        envs.close()


def test_close_leaves_no_processes_and_no_shared_memory():
    envs = make_vec(ImageEnv, 3, envs_per_worker=1)
    envs.reset(seed=0)
    pids = worker_pids(envs)
    assert len(shm_segments(os.getpid())) >= 1
    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert set(pids) <= before_children
    start = time.monotonic()
    envs.close()
    assert time.monotonic() - start < 5  # workers exit on request, not by being killed
    assert_gone(pids)
    assert shm_segments(os.getpid()) == []
    envs.close()  # idempotent


HOLD_PAST_CLOSE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from test_vector_helpers import ImageEnv
    from vla_gym.vector import make_vec

    if __name__ == "__main__":
        envs = make_vec(ImageEnv, 2, copy={copy})
        obs, _ = envs.reset(seed=0)
        front = obs["images"]["front"]
        expected = front.copy()
        envs.close()
        assert np.array_equal(front, expected)  # still mapped: no crash, same pixels
        front[:] = 7  # and writable, as before
        print("held", front.shape)
    """
)


@pytest.mark.parametrize("copy", [True, False])
def test_observations_held_past_close_stay_valid(tmp_path, copy):
    """close() unlinks the shared memory but must not unmap it under arrays the caller still
    holds (that crashed the process); run in a subprocess so a crash fails only this test."""
    script = tmp_path / "hold.py"
    script.write_text(HOLD_PAST_CLOSE.format(tests=str(Path(__file__).parent), copy=copy))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "held (2, 16, 16, 3)" in done.stdout


def test_close_after_a_dead_worker_and_with_steps_in_flight():
    envs = make_vec(ImageEnv, 2)
    envs.reset(seed=0)
    pids = worker_pids(envs)
    os.kill(pids[0], signal.SIGKILL)
    envs.send(ZERO[:1], env_ids=[1])
    envs.close()
    assert_gone(pids)
    assert shm_segments(os.getpid()) == []


SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    # Python as started from a terminal: a background job of a non-interactive shell (how some
    # CI runners start the suite) inherits SIGINT as ignored, and Ctrl-C would do nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    import numpy as np
    from test_vector_helpers import ImageEnv
    from vla_gym.vector import make_vec

    envs = make_vec(ImageEnv, 2)
    envs.reset(seed=0)
    print(" ".join(str(i["pid"]) for i in envs.worker_info()), flush=True)
    if {mode!r} == "exit":
        sys.exit(0)  # no close(): atexit must clean up
    while True:
        envs.step(np.zeros((2, 2), np.float32))
        time.sleep(0.01)
    """
)


@pytest.mark.parametrize("mode", ["exit", "ctrl-c", "parent-killed"])
def test_interpreter_exit_ctrl_c_and_parent_death_clean_up(mode):
    script = SCRIPT.format(tests=str(Path(__file__).parent), mode=mode)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so Ctrl-C below reaches its whole process group only
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read()
        if mode == "ctrl-c":
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        elif mode == "parent-killed":
            time.sleep(0.3)
            proc.kill()
        try:  # atexit closes the workers: each gets CLOSE_GRACE s, then SIGKILL
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"the script did not exit after {mode}:\n{proc.communicate()[1][-3000:]}")
        assert_gone(pids)
        deadline = time.monotonic() + 10  # after SIGKILL, Python's resource tracker unlinks
        while shm_segments(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert shm_segments(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
