"""One line describing the machine a benchmark ran on (printed above every table)."""

from __future__ import annotations

import os
import platform

from vla_gym.core.rendering import gpu_available


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        load = f", load avg {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    gpu = "GPU visible" if gpu_available() else "no GPU"
    return f"{os.cpu_count()} cores ({cpu}), {gpu}, Python {platform.python_version()}{load}"
