"""The floor under every subprocess vector env: one-byte ping-pong between two processes.

A worker that hosts one env is woken once per step and goes back to sleep once per step; this
script measures what that costs on the machine, wall clock and CPU on each side, over a Unix
socket pair (what ``multiprocessing.Pipe()`` gives, and what vla_gym's workers use) and over a
pair of plain pipes, side by side.

    python benchmarks/ipc_roundtrip.py
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def round_trip(kind: str, trips: int) -> tuple[float, float, float]:
    """(wall us, parent CPU us, child CPU us) per round trip."""
    if kind == "socket pair":
        parent_end, child_end = socket.socketpair()
        parent_read = parent_write = parent_end.fileno()
        child_read = child_write = child_end.fileno()
    else:
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        parent_read, parent_write, child_read, child_write = (
            to_parent_r,
            to_child_w,
            to_child_r,
            to_parent_w,
        )
    pid = os.fork()
    if pid == 0:
        for _ in range(trips):
            os.read(child_read, 1)
            os.write(child_write, b"\x00")
        os._exit(0)
    before, start = os.times(), time.perf_counter()
    for _ in range(trips):
        os.write(parent_write, b"0")
        os.read(parent_read, 1)
    wall = time.perf_counter() - start
    mid = os.times()
    os.waitpid(pid, 0)
    after = os.times()
    parent = (mid.user - before.user) + (mid.system - before.system)
    child = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if kind == "socket pair":
        parent_end.close()
        child_end.close()
    else:
        for fd in (to_child_r, to_child_w, to_parent_r, to_parent_w):
            os.close(fd)
    return wall / trips * 1e6, parent / trips * 1e6, child / trips * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"cores={cores} load(1 min)={os.getloadavg()[0]:.1f}")
    print(f"{'channel':12s} {'round trip us':>14s} {'parent CPU us':>14s} {'child CPU us':>13s}")
    for _ in range(args.rounds):
        for kind in ("socket pair", "pipes"):
            wall, parent, child = round_trip(kind, args.trips)
            print(f"{kind:12s} {wall:14.1f} {parent:14.1f} {child:13.1f}")


if __name__ == "__main__":
    main()
