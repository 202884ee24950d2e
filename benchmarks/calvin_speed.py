"""CALVIN speed and expert table: steps/s with both cameras (builtin vs official assets,
TinyRenderer vs EGL), physics only, and the scripted experts' success rates.

    python benchmarks/calvin_speed.py                      # everything, short
    python benchmarks/calvin_speed.py --steps 200 --episodes 10

Every configuration runs in this process, one after the other, on one core (PyBullet is
single-threaded), so the ratios are comparable; absolute numbers depend on the machine's load.
The official assets come from ``--calvin-root`` or ``$VLA_GYM_CALVIN_ROOT`` (default: the
project's ``../shared/assets/calvin`` when present). The two tables also go to
``benchmarks/results/calvin_speed.json`` and ``calvin_experts.json`` (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from _results import write_result  # noqa: E402

import vla_gym  # noqa: E402, F401
from vla_gym.experts import make_expert  # noqa: E402
from vla_gym.experts.calvin import EXPERT_TASKS  # noqa: E402

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
    rows = []
    for name, assets in modes.items():
        for quality in ("fast", "full", None):
            kwargs = {"obs_mode": "flat"} if quality is None else {"render_quality": quality}
            wall, cpu, renderer = steps_per_second(args.steps, **kwargs, **assets)
            images = "flat state (physics only)" if quality is None else "static 200² + gripper 84²"
            print(f"| {name} | {renderer} | {images} | {wall:.1f} | {cpu:.1f} |", flush=True)
            rows.append(
                {
                    "assets": name,
                    "quality": quality or "none",
                    "renderer": renderer,
                    "images": images,
                    "steps/s (wall)": wall,
                    "steps per CPU-second": cpu,
                }
            )
    print(
        "\nsteps per CPU-second = steps / this process's CPU time (all its threads): the per-core"
        " rate, robust to other jobs on a shared machine. 'egl' = PyBullet's EGL plugin (here on"
        " Mesa llvmpipe, still the CPU); it falls back to 'tiny' when EGL is missing.\n"
    )

    fast = next(r for r in rows if r["assets"] == "builtin" and r["quality"] == "fast")
    write_result(
        "calvin_speed",
        title="CALVIN speed (scene D, both cameras)",
        claim=(
            "With the builtin assets and fast rendering, CALVIN steps with both cameras "
            f"(static 200 px, gripper 84 px) at {fast['steps per CPU-second']:.1f} steps per "
            f"CPU-second, the per-core rate ({args.steps} random steps per configuration)."
        ),
        metric="steps per CPU-second (builtin, fast)",
        unit="steps/CPU-s",
        per_seed={"run": fast["steps per CPU-second"]},
        rows=rows,
    )

    expert_rows: dict[str, dict] = {}
    means: dict[str, object] = {"task": "mean over tasks"}
    for name, assets in modes.items():
        rates = expert_table(args.episodes, assets)
        for task, rate in rates.items():
            expert_rows.setdefault(task, {"task": task})[f"{name} assets (%)"] = 100 * rate
        print(f"Expert success, {name} assets, {args.episodes} episodes per task (valid starts)")
        print("| task | success |")
        print("|---|---|")
        for task, rate in rates.items():
            print(f"| {task} | {100 * rate:.0f}% |")
        mean_rate = 100 * float(np.mean(list(rates.values())))
        print(f"| **mean over {len(rates)} tasks** | {mean_rate:.1f}% |\n")
        means[f"{name} assets (%)"] = mean_rate
    write_result(
        "calvin_experts",
        title="CALVIN scripted experts (single tasks, scene D)",
        claim=(
            f"The scripted experts solve the {len(EXPERT_TASKS)} CALVIN tasks with "
            f"{means['builtin assets (%)']:.1f} % mean success with the builtin assets "
            f"({args.episodes} episodes per task from valid start states, seeds 1000+)."
        ),
        metric="builtin assets (%)",
        unit="%",
        per_seed={"run": means["builtin assets (%)"]},
        rows=[*expert_rows.values(), means],
    )


if __name__ == "__main__":
    main()
