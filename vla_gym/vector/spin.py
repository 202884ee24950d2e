"""Spin-then-sleep waiting for the subprocess backend's tight step loop.

A process that sleeps between the steps of a fast loop must be woken by the kernel at every
step, and on a virtual machine that costs tens of microseconds of latency and CPU on each side
(an idle vCPU has to be woken too; ``benchmarks/ipc_roundtrip.py``). So a worker waiting for its
next command, and the caller waiting for the answers, first poll for a short while, but only
while the other side has been answering within the spin window: a slower partner, such as a
policy computing actions for milliseconds, gets plain blocking waits and no CPU is burnt. While
polling they yield the core, so a worker that still has an env to step is not held up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def spin_until(ready: Callable[[], bool], seconds: float) -> bool:
    """Poll ``ready`` for up to ``seconds``, yielding the core between polls; whether it
    became ready."""
    end = time.perf_counter() + seconds
    while not ready():
        if time.perf_counter() >= end:
            return False
        os.sched_yield()
    return True
