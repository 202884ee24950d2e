"""LIBERO step throughput with two 128 px cameras: fast vs full rendering, side by side.

Configurations, all on the same task and init state, stepped with the same random actions:
  * ``vla_gym fast``: ``VLA/LIBERO-*-v0`` with ``render_quality="fast"`` (no shadows,
    reflections or multisampling);
  * ``vla_gym full``: the same with ``render_quality="full"`` (MuJoCo's defaults);
  * ``robosuite cameras``: LIBERO's own ``OffScreenRenderEnv`` with robosuite's camera
    observations, the way the reference pipelines (RLinf, LeRobot) run it;
  * ``physics only``: ``obs_mode="flat"`` (no rendering), the ceiling.
The configurations take turns in short blocks so load changes on a shared machine hit them
alike; the ratios are the result, absolute numbers depend on the machine. The table also goes to
``benchmarks/results/libero_speed.json`` (``benchmarks/_results.py``)::

    python benchmarks/libero_speed.py --libero-assets ../shared/assets/libero
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from _results import write_result  # noqa: E402

import vla_gym  # noqa: E402, F401  (registers the IDs, sets up headless GL)
from vla_gym.envs.libero.offline import import_libero, resolve_assets  # noqa: E402
from vla_gym.envs.libero.suites import get_suite  # noqa: E402

DEFAULT_ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "libero"


def make_vla_gym(suite: str, task: int, size: int, assets: Path, **kwargs):
    env = gym.make(
        get_suite(suite).env_id, task_id=task, image_size=size, libero_assets=str(assets), **kwargs
    )
    return env, (lambda action: env.step(action))


def make_robosuite_reference(suite: str, task: int, size: int, assets: Path):
    libero = import_libero(assets)
    with contextlib.redirect_stdout(io.StringIO()):
        benchmark = libero.benchmark.get_benchmark_dict()[get_suite(suite).libero_name]()
        from libero.libero.envs import OffScreenRenderEnv

        env = OffScreenRenderEnv(
            bddl_file_name=benchmark.get_task_bddl_file_path(task),
            camera_heights=size,
            camera_widths=size,
        )
    env.reset()
    env.set_init_state(benchmark.get_task_init_states(task)[0])
    return env, (lambda action: env.step(action.astype(np.float64)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=6, help="turns per configuration")
    parser.add_argument("--block-steps", type=int, default=20)
    parser.add_argument("--libero-assets", default=os.environ.get("VLA_GYM_LIBERO_ASSETS"))
    args = parser.parse_args(argv)
    assets = resolve_assets(args.libero_assets or DEFAULT_ASSETS)
    common = (args.suite, args.task, args.size, assets)
    configs = {
        "vla_gym fast": make_vla_gym(*common, render_quality="fast"),
        "vla_gym full": make_vla_gym(*common, render_quality="full"),
        "robosuite cameras": make_robosuite_reference(*common),
        "physics only": make_vla_gym(*common, obs_mode="flat"),
    }
    for name, (env, _) in configs.items():
        if name != "robosuite cameras":
            env.reset(seed=0, options={"init_state_id": 0})
    rng = np.random.default_rng(0)
    seconds = dict.fromkeys(configs, 0.0)
    steps = dict.fromkeys(configs, 0)
    for _ in range(args.blocks):
        actions = rng.uniform(-0.3, 0.3, (args.block_steps, 7)).astype(np.float32)
        for name, (_, step) in configs.items():
            start = time.perf_counter()
            for action in actions:
                step(action)
            seconds[name] += time.perf_counter() - start
            steps[name] += len(actions)
    rates = {name: steps[name] / seconds[name] for name in configs}
    print(
        f"LIBERO-{args.suite} task {args.task}, two {args.size} px cameras (agentview + wrist), "
        f"{steps['vla_gym fast']} steps per configuration, {os.cpu_count()} CPUs, "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
    )
    print()
    print("| configuration | steps/s | ms/step | vs vla_gym full | vs robosuite cameras |")
    print("|---|---|---|---|---|")
    for name, rate in rates.items():
        print(
            f"| {name} | {rate:.1f} | {1000 / rate:.1f} | "
            f"{rate / rates['vla_gym full']:.2f}x | {rate / rates['robosuite cameras']:.2f}x |"
        )
    for env, _ in configs.values():
        env.close()
    ratio = rates["vla_gym fast"] / rates["robosuite cameras"]
    write_result(
        "libero_speed",
        title=f"LIBERO speed (LIBERO-{args.suite}, two {args.size} px cameras)",
        claim=(
            f"With fast rendering a LIBERO-{args.suite} step with two {args.size} px cameras "
            f"runs {ratio:.1f}x as fast as with robosuite's camera observations, the way the "
            f"reference pipelines run it ({steps['vla_gym fast']} steps per configuration, "
            f"taking turns in blocks of {args.block_steps})."
        ),
        metric="vla_gym fast / robosuite cameras",
        unit="x",
        per_seed={"run": ratio},
        rows=[
            {
                "configuration": name,
                "steps/s": rate,
                "ms/step": 1000 / rate,
                "vs vla_gym full": rate / rates["vla_gym full"],
                "vs robosuite cameras": rate / rates["robosuite cameras"],
            }
            for name, rate in rates.items()
        ],
        env_steps=sum(steps.values()),
        wall_seconds=sum(seconds.values()),
    )


if __name__ == "__main__":
    main()
