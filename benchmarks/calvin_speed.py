"""CALVIN speed and expert table: steps/s with both cameras (builtin vs official assets,
TinyRenderer vs EGL), physics only, the scripted experts' success rates and, with
``--official``, steps per CPU-second side by side with the official calvin_env.

    python benchmarks/calvin_speed.py                      # everything, short
    python benchmarks/calvin_speed.py --steps 200 --episodes 10
    python benchmarks/calvin_speed.py --episodes 0 --official ../calvin_env   # speed vs calvin_env

Every configuration runs in this process, one after the other, on one core (PyBullet is
single-threaded), so the ratios are comparable; absolute numbers depend on the machine's load.
The official assets come from ``--calvin-root`` or ``$VLA_GYM_CALVIN_ROOT``, else from the
``--official`` checkout. ``--official`` is a calvin_env checkout (its ``calvin_env`` package and
``conf/``); its environment is built with the static and gripper cameras and TinyRenderer and
stepped with the same random relative actions, interleaved with the builtin and official-asset
modes in ``--rounds`` rounds, so a slower or faster stretch of a busy machine hits all three.
The tables also go to ``benchmarks/results/calvin_speed.json`` and ``calvin_experts.json``
(``benchmarks/_results.py``); ``--episodes 0`` skips the expert table.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from _results import write_result  # noqa: E402

import vla_gym  # noqa: E402, F401
from vla_gym.experts import make_expert  # noqa: E402
from vla_gym.experts.calvin import EXPERT_TASKS  # noqa: E402


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


def official_calvin_env(checkout: Path, calvin_root: Path):
    """calvin_env's ``PlayTableSimEnv`` on scene D with its static and gripper cameras, in a
    PyBullet DIRECT client (TinyRenderer), built from the checkout's own YAML configs."""
    _stub_missing_modules()
    sys.path.insert(0, str(checkout))
    from calvin_env.envs import play_table_env
    from omegaconf import OmegaConf

    # Its constructor logs the checkout's git commit; a plain source copy has none.
    play_table_env.get_git_commit_hash = lambda path: "unknown"
    conf = checkout / "conf"
    robot = OmegaConf.merge(
        OmegaConf.load(conf / "robot" / "panda.yaml"),
        OmegaConf.load(conf / "robot" / "panda_longer_finger.yaml"),
    )
    robot.pop("defaults")
    cfg = OmegaConf.create(
        {
            "data_path": str(calvin_root / "data"),
            "robot": robot,
            "scene": OmegaConf.load(conf / "scene" / "calvin_scene_D.yaml"),
            "cameras": {
                name: OmegaConf.load(conf / "cameras" / "cameras" / f"{name}.yaml")
                for name in ("static", "gripper")
            },
        }
    )
    OmegaConf.resolve(cfg)
    env = play_table_env.PlayTableSimEnv(
        robot_cfg=cfg.robot,
        seed=0,
        use_vr=False,
        bullet_time_step=240.0,
        cameras=cfg.cameras,
        show_gui=False,
        scene_cfg=cfg.scene,
        use_scene_info=False,
        use_egl=False,
        control_freq=30,
    )
    env.reset()
    return env


def _stub_missing_modules() -> None:
    """calvin_env imports ``gym``, ``git`` and ``quaternion`` at module level; stepping it needs
    only ``gym.Env`` and ``gym.utils.seeding`` (gymnasium's has the same ``np_random``)."""
    from gymnasium.utils import seeding

    for name in ("gym", "git", "quaternion"):
        try:
            importlib.import_module(name)
        except ImportError:
            module = types.ModuleType(name)
            if name == "gym":
                module.Env = object
                module.utils = types.SimpleNamespace(seeding=seeding)
                sys.modules["gym.utils"] = module.utils
                sys.modules["gym.utils.seeding"] = seeding
            sys.modules[name] = module


def side_by_side(steps: int, rounds: int, checkout: Path, calvin_root: Path) -> dict[str, float]:
    """Steps per CPU-second of the builtin and official-asset modes and calvin_env, measured in
    ``rounds`` interleaved rounds of ``steps`` steps each (fast rendering, both cameras)."""
    steppers: dict[str, Callable[[], object]] = {}
    for name, assets in (
        ("builtin assets", {"assets": "builtin"}),
        ("official assets", {"assets": "official", "calvin_root": str(calvin_root)}),
    ):
        env = gym.make(
            "VLA/CALVIN-D-v0",
            task="open_drawer",
            max_steps=10**6,
            render_quality="fast",
            **assets,
        )
        env.reset(seed=0)
        env.action_space.seed(0)
        steppers[name] = lambda env=env: env.step(env.action_space.sample())
    official = official_calvin_env(checkout, calvin_root)
    rng = np.random.default_rng(0)

    def official_step() -> None:
        action = rng.uniform(-1, 1, 7)
        action[6] = 1 if action[6] > 0 else -1  # calvin_env's gripper command is +-1
        official.step({"action": action, "type": "cartesian_rel"})

    steppers["calvin_env"] = official_step
    for step in steppers.values():  # warm-up (first renders allocate buffers)
        for _ in range(5):
            step()
    cpu = dict.fromkeys(steppers, 0.0)
    for _ in range(rounds):
        for name, step in steppers.items():
            start = time.process_time()
            for _ in range(steps):
                step()
            cpu[name] += time.process_time() - start
    return {name: steps * rounds / seconds for name, seconds in cpu.items()}


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
    parser.add_argument(
        "--official", type=Path, help="a calvin_env checkout to measure side by side"
    )
    parser.add_argument("--rounds", type=int, default=5, help="side-by-side rounds")
    args = parser.parse_args()
    root = args.calvin_root or (str(args.official) if args.official else None)
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
    claim = (
        "With the builtin assets and fast rendering, CALVIN steps with both cameras "
        f"(static 200 px, gripper 84 px) at {fast['steps per CPU-second']:.1f} steps per "
        f"CPU-second, the per-core rate ({args.steps} random steps per configuration)."
    )
    metric, unit = "steps per CPU-second (builtin, fast)", "steps/CPU-s"
    value: float | dict[str, float] = fast["steps per CPU-second"]
    if args.official:
        if "official" not in modes:
            parser.error("--official needs the official assets: --calvin-root or a checkout")
        rates = side_by_side(
            args.steps, args.rounds, args.official, Path(modes["official"]["calvin_root"])
        )
        ratios = {
            f"{name} / calvin_env": rates[name] / rates["calvin_env"]
            for name in ("builtin assets", "official assets")
        }
        print(
            f"\nSide by side with calvin_env ({args.rounds} interleaved rounds of {args.steps}"
            " steps, both cameras, TinyRenderer)\n"
        )
        print("| environment | steps per CPU-second | vs calvin_env |")
        print("|---|---|---|")
        for name, rate in rates.items():
            ratio = rate / rates["calvin_env"]
            print(f"| {name} | {rate:.1f} | {ratio:.2f}x |")
            rows.append(
                {
                    "assets": name if name == "calvin_env" else f"{name.split()[0]}, side by side",
                    "quality": "fast",
                    "renderer": "tiny",
                    "images": "static 200² + gripper 84²",
                    "steps per CPU-second": rate,
                    "vs calvin_env": ratio,
                }
            )
        claim = (
            "Side by side with the official calvin_env (scene D, both cameras, TinyRenderer, "
            f"{args.rounds} interleaved rounds of {args.steps} random steps), CALVIN steps "
            f"{ratios['official assets / calvin_env']:.2f}x as fast per CPU-second with the "
            f"official assets and {ratios['builtin assets / calvin_env']:.2f}x with the builtin "
            "assets."
        )
        metric, unit, value = "official assets / calvin_env", "x", ratios
    write_result(
        "calvin_speed",
        title="CALVIN speed (scene D, both cameras)",
        claim=claim,
        metric=metric,
        unit=unit,
        per_seed={"run": value},
        rows=rows,
    )

    if args.episodes <= 0:
        return
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
