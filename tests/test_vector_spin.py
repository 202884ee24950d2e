"""Spin-then-sleep waiting (``spin_us``): a worker polls for its next command only while the
parent sends commands fast, stops as soon as the parent goes away, and changes no result."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest
from test_vector_helpers import ImageEnv

from vla_gym import make_vec
from vla_gym.vector.channel import Channel
from vla_gym.vector.spin import spin_until
from vla_gym.vector.worker import PAYLOAD_KINDS, CommandWaiter

STEP = b"0"  # the one-byte "step every env" command


@pytest.fixture
def sockets():
    parent, child = socket.socketpair()
    yield parent, child
    parent.close()
    child.close()


@pytest.fixture
def yields(monkeypatch):
    """How often a spinner yielded the core, i.e. polled once more instead of sleeping."""
    count = [0]
    real = os.sched_yield

    def counting() -> None:
        count[0] += 1
        real()

    monkeypatch.setattr(os, "sched_yield", counting)
    return count


def waiter_on(child: socket.socket, spin_seconds: float) -> CommandWaiter:
    return CommandWaiter(Channel(child.fileno(), PAYLOAD_KINDS), spin_seconds)


def command_after(waiter: CommandWaiter, parent: socket.socket, delay: float) -> tuple:
    """Answer, let the parent send the next command ``delay`` seconds later, read it."""
    waiter.answered()
    sender = threading.Timer(delay, parent.sendall, args=(STEP,))
    sender.start()
    try:
        return waiter.next_command()
    finally:
        sender.join()


def test_spins_only_while_commands_follow_answers_quickly(sockets, yields):
    parent, child = sockets
    waiter = waiter_on(child, spin_seconds=0.05)
    parent.sendall(STEP)
    assert waiter.next_command() == (STEP, b"")
    assert yields[0] == 0  # the first command: no gap known yet, a plain blocking read

    command_after(waiter, parent, 0.01)  # a 10 ms gap: inside the 50 ms spin window
    yields[0] = 0
    assert command_after(waiter, parent, 0.01) == (STEP, b"")
    assert yields[0] > 0  # polled for it (up to twice the last gap) instead of sleeping

    command_after(waiter, parent, 0.08)  # a slow parent: 80 ms > the spin window
    yields[0] = 0
    assert command_after(waiter, parent, 0.01) == (STEP, b"")
    assert yields[0] == 0  # after a slow command it sleeps at once


def test_zero_spin_never_polls(sockets, yields):
    parent, child = sockets
    waiter = waiter_on(child, spin_seconds=0.0)
    for _ in range(3):
        assert command_after(waiter, parent, 0.005) == (STEP, b"")
    assert yields[0] == 0


def test_spin_until_polls_for_at_most_its_window():
    start = time.perf_counter()
    assert not spin_until(lambda: False, 0.02)
    assert 0.02 <= time.perf_counter() - start < 1.0
    calls = iter([False, False, True])
    assert spin_until(lambda: next(calls), 10.0)  # returns as soon as it is ready


def test_a_spinning_worker_sees_its_parent_go_away_at_once(sockets):
    parent, child = sockets
    waiter = waiter_on(child, spin_seconds=0.05)
    parent.sendall(STEP)
    waiter.next_command()
    command_after(waiter, parent, 0.02)  # now it spins up to 40 ms for the next command
    waiter.answered()
    closer = threading.Timer(0.005, parent.shutdown, args=(socket.SHUT_RDWR,))
    closer.start()
    start = time.perf_counter()
    with pytest.raises(EOFError):
        waiter.next_command()
    closer.join()
    assert time.perf_counter() - start < 1.0


def test_spinning_changes_no_result():
    actions = np.random.default_rng(0).uniform(-1, 1, (12, 3, 2)).astype(np.float32)
    runs = []
    for spin_us in (0, 200, 5000):
        envs = make_vec(ImageEnv, 3, backend="subproc", spin_us=spin_us)
        try:
            obs, _ = envs.reset(seed=7)
            steps = [obs]
            for action in actions:
                obs, reward, terminated, truncated, _ = envs.step(action)
                steps.append((obs, reward, terminated, truncated))
            runs.append(steps)
        finally:
            envs.close()
    for other in runs[1:]:
        np.testing.assert_equal(other, runs[0])


@pytest.mark.parametrize("spin_us", [-1, 1e6, "fast", None])
def test_bad_spin_is_named(spin_us):
    with pytest.raises(ValueError, match="spin_us must be a number of microseconds"):
        make_vec(ImageEnv, 2, backend="sync", spin_us=spin_us)
