"""CALVIN speed and expert table: steps/s with both cameras (builtin vs official assets,
TinyRenderer vs EGL), physics only, and the scripted experts' success rates.

    python benchmarks/calvin_speed.py                      # everything, short
    python benchmarks/calvin_speed.py --steps 200 --episodes 10

Every configuration runs in this process, one after the other, on one core (PyBullet is
single-threaded), so the ratios are comparable; absolute numbers depend on the machine's load.
The official assets come from ``--calvin-root`` or ``$VLA_GYM_CALVIN_ROOT`` (default: the
project's ``../shared/assets/calvin`` when present).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import vla_gym  # noqa: F401
from vla_gym.experts import make_expert
from vla_gym.experts.calvin import EXPERT_TASKS

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "calvin"


def steps_per_second(steps: int, **kwargs) -> tuple[float, float, str]:
    """(steps per wall-clock second, steps per CPU second of this process, renderer)."""
    env = gym.make("VLA/CALVIN-D-v0", task="open_drawer", max_steps=10**6, **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):  # warm-up (first render allocates buffers)
        env.step(env.action_space.sample())
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    renderer = env.unwrapped.renderer if kwargs.get("obs_mode") != "flat" else "none"
    env.close()
    return steps / wall, steps / cpu, renderer


def expert_table(episodes: int, assets: dict) -> dict[str, float]:
    env = gym.make("VLA/CALVIN-D-v0", obs_mode="flat", task="open_drawer", **assets)
    rates = {}
    for task in EXPERT_TASKS:
        expert = make_expert("VLA/CALVIN-D-v0", task=task)
        wins = 0
        for seed in range(episodes):
            obs, info = env.reset(seed=1000 + seed, options={"task": task})
            expert.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
                done = terminated or truncated
            wins += bool(info["success_once"])
        rates[task] = wins / episodes
    env.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=10, help="expert episodes per task")
    parser.add_argument("--calvin-root", default=os.environ.get("VLA_GYM_CALVIN_ROOT"))
    args = parser.parse_args()
    root = args.calvin_root or (str(DEFAULT_ROOT) if (DEFAULT_ROOT / "data").is_dir() else None)
    modes = {"builtin": {"assets": "builtin"}}
    if root:
        modes["official"] = {"assets": "official", "calvin_root": root}

    print(f"CALVIN speed, scene D, {args.steps} random steps each, one process, one core\n")
    print(f"machine load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| assets | renderer | images | steps/s (wall) | steps per CPU-second |")
    print("|---|---|---|---|---|")
    for name, assets in modes.items():
        for quality in ("fast", "full"):
            wall, cpu, renderer = steps_per_second(args.steps, render_quality=quality, **assets)
            row = f"| {name} | {renderer} | static 200² + gripper 84² | {wall:.1f} | {cpu:.1f} |"
            print(row, flush=True)
        wall, cpu, _ = steps_per_second(args.steps, obs_mode="flat", **assets)
        print(f"| {name} | none | flat state (physics only) | {wall:.1f} | {cpu:.1f} |", flush=True)
    print(
        "\nsteps per CPU-second = steps / this process's CPU time (all its threads): the per-core"
        " rate, robust to other jobs on a shared machine. 'egl' = PyBullet's EGL plugin (here on"
        " Mesa llvmpipe, still the CPU); it falls back to 'tiny' when EGL is missing.\n"
    )

    for name, assets in modes.items():
        rates = expert_table(args.episodes, assets)
        print(f"Expert success, {name} assets, {args.episodes} episodes per task (valid starts)")
        print("| task | success |")
        print("|---|---|")
        for task, rate in rates.items():
            print(f"| {task} | {100 * rate:.0f}% |")
        print(
            f"| **mean over {len(rates)} tasks** | {100 * np.mean(list(rates.values())):.1f}% |\n"
        )


if __name__ == "__main__":
    main()
