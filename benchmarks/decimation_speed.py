"""Steps per CPU second with original vs decimated meshes in fast rendering, side by side.

For each scene, two envs with ``render_quality="fast"``: ``mesh_budget=None`` (the original
meshes) and ``mesh_budget=<budget>`` (meshes and planes above the budget drawn decimated, see
``vla_gym/core/decimate.py``). Both are reset with the same seed and stepped with the same random
actions, in interleaved blocks so that load from other processes hits both alike. Reported:

* steps per second of process CPU time (physics + rendering, all threads of the process);
* the triangles of the model's meshes before and after;
* the image cost: mean absolute pixel difference (0-255) between the two envs' frames over the
  trajectory (physics is identical, so the frames show the same states);
* the scripted experts (``vla_gym.make_expert``) of PandaPickCube, LIBERO-Object (tasks 0-2) and
  Meta-World (reach, push, pick-place), with images rendered as in training: successes over the
  same seeds or init states with and without decimation, and in how many episodes the outcome
  is the same.

    python benchmarks/decimation_speed.py [--budget 500] [--blocks 4] [--block-steps 15]
        [--expert-episodes 5]

LIBERO needs its asset pack (``--libero-assets`` or ``$VLA_GYM_LIBERO_ASSETS``); without it the
LIBERO rows are skipped.
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
from _machine import describe_machine  # noqa: E402
from _results import write_result  # noqa: E402

import vla_gym  # noqa: E402  (registers the IDs, picks a headless GL backend)
from vla_gym.core.decimate import DEFAULT_MESH_BUDGET  # noqa: E402

# name -> (env id, kwargs): the scenes and sizes where CPU rendering is triangle-bound.
SCENES = {
    "PandaPickCubeVision, 128 px, front + wrist": (
        "VLA/PandaPickCubeVision-v0",
        {"image_size": 128},
    ),
    "LIBERO-Object task 0, 64 px, agentview + wrist": (
        "VLA/LIBERO-Object-v0",
        {"image_size": 64, "task_id": 0, "init_state_id": 0},
    ),
    "Meta-World pick-place, 128 px, corner2": (
        "VLA/MetaWorld-v0",
        {"task": "pick-place", "image_size": 128},
    ),
}


def decimation_stats(env: gym.Env):
    """The triangle counts of the env's renderer (each adapter names its MujocoCameras)."""
    base = env.unwrapped
    cameras = getattr(base, "_renderer", None) or base._mujoco_cameras
    return cameras.decimation


def step_block(env: gym.Env, actions: np.ndarray, state: dict) -> tuple[float, list]:
    """Run ``actions`` (resetting with the same seed when an episode ends); CPU seconds, frames."""
    frames = []
    start = time.process_time()
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs["images"])
        if terminated or truncated:
            state["episode"] += 1
            env.reset(seed=state["episode"])
    return time.process_time() - start, frames


def measure_scene(env_id: str, kwargs: dict, budget: int, args) -> dict:
    envs = {
        label: gym.make(env_id, render_quality="fast", mesh_budget=b, **kwargs)
        for label, b in (("original", None), ("decimated", budget))
    }
    states = {label: {"episode": 0} for label in envs}
    for env in envs.values():
        env.reset(seed=0)
    space = envs["original"].action_space
    space.seed(0)
    seconds = {label: 0.0 for label in envs}
    steps = 0
    diffs = []
    for _ in range(args.blocks):
        actions = np.stack([space.sample() for _ in range(args.block_steps)])
        frames = {}
        for label, env in envs.items():
            spent, frames[label] = step_block(env, actions, states[label])
            seconds[label] += spent
        steps += len(actions)
        for original, decimated in zip(frames["original"], frames["decimated"], strict=True):
            diffs += [np.abs(original[k].astype(np.int16) - decimated[k]).mean() for k in original]
    row = {
        "original steps/CPU s": steps / seconds["original"],
        "decimated steps/CPU s": steps / seconds["decimated"],
        "triangles before": decimation_stats(envs["decimated"]).faces_before,
        "triangles after": decimation_stats(envs["decimated"]).faces_after,
        "mean abs pixel diff": float(np.mean(diffs)),
    }
    row["speed-up"] = row["decimated steps/CPU s"] / row["original steps/CPU s"]
    for env in envs.values():
        env.close()
    return row


# The Meta-World tasks whose scripted experts are run with and without decimation.
METAWORLD_EXPERT_TASKS = ("reach", "push", "pick-place")


def expert_cases(episodes: int) -> dict[str, tuple[str, dict, list[dict]]]:
    """Name -> (env id, env kwargs, the resets of its episodes); ``episodes`` seeds or init
    states per task. The experts act on privileged state, so the meshes drawn must not matter."""
    seeds = [{"seed": seed} for seed in range(episodes)]
    libero = [
        {"options": {"task_id": task, "init_state_id": init}}
        for task in range(3)
        for init in range(episodes)
    ]
    cases = {
        f"PandaPickCube expert, 64 px, seeds 0-{episodes - 1}": (
            "VLA/PandaPickCubeVision-v0",
            {"image_size": 64},
            seeds,
        ),
        f"LIBERO-Object expert, 64 px, tasks 0-2 x init states 0-{episodes - 1}": (
            "VLA/LIBERO-Object-v0",
            {"image_size": 64},
            libero,
        ),
    }
    for task in METAWORLD_EXPERT_TASKS:
        cases[f"Meta-World {task} expert, 64 px, seeds 0-{episodes - 1}"] = (
            "VLA/MetaWorld-v0",
            {"task": task, "image_size": 64},
            seeds,
        )
    return cases


def expert_outcomes(env_id: str, kwargs: dict, resets: list[dict], budget: int | None) -> list:
    """``success_once`` of the scripted expert in each episode (rendering on, as in training)."""
    env = gym.make(env_id, render_quality="fast", mesh_budget=budget, **kwargs)
    expert = vla_gym.make_expert(env_id)
    outcomes = []
    for reset in resets:
        obs, info = env.reset(**reset)
        expert.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
        outcomes.append(bool(info["success_once"]))
    env.close()
    return outcomes


def expert_row(name: str, case: tuple[str, dict, list[dict]], budget: int) -> dict:
    outcomes = {
        label: expert_outcomes(*case, mesh_budget)
        for label, mesh_budget in (("original", None), ("decimated", budget))
    }
    row = {
        "scene": name,
        "original successes": sum(outcomes["original"]),
        "decimated successes": sum(outcomes["decimated"]),
        "episodes": len(case[2]),
        "same outcome": sum(
            a == b for a, b in zip(outcomes["original"], outcomes["decimated"], strict=True)
        ),
    }
    print(
        f"{name}: expert successes {row['original successes']} -> "
        f"{row['decimated successes']} of {row['episodes']}, same outcome in "
        f"{row['same outcome']} episodes",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_MESH_BUDGET)
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks per scene")
    parser.add_argument("--block-steps", type=int, default=15, help="env steps per block")
    parser.add_argument(
        "--expert-episodes", type=int, default=5, help="seeds or init states per expert task"
    )
    parser.add_argument("--libero-assets", type=Path, default=None)
    args = parser.parse_args()
    if args.libero_assets is not None:
        os.environ["VLA_GYM_LIBERO_ASSETS"] = str(args.libero_assets)

    print(f"machine: {describe_machine()}; mesh_budget={args.budget}")
    rows = []
    for name, (env_id, kwargs) in SCENES.items():
        try:
            row = measure_scene(env_id, kwargs, args.budget, args)
        except Exception as exc:  # e.g. the LIBERO asset pack is not here
            print(f"{name}: skipped ({type(exc).__name__}: {exc})")
            continue
        rows.append({"scene": name, **row})
        print(
            f"{name}: {row['original steps/CPU s']:.1f} -> {row['decimated steps/CPU s']:.1f} "
            f"steps/CPU s ({row['speed-up']:.2f}x), triangles {row['triangles before']} -> "
            f"{row['triangles after']}, mean abs pixel diff {row['mean abs pixel diff']:.2f}"
        )
    experts = []
    for name, case in expert_cases(args.expert_episodes).items():
        try:
            experts.append(expert_row(name, case, args.budget))
        except Exception as exc:  # e.g. the LIBERO asset pack is not here
            print(f"{name}: skipped ({type(exc).__name__}: {exc})")
    rows += experts
    experts_run = ", ".join(row["scene"].split(" expert")[0] for row in experts)
    experts_text = (
        f"every scripted-expert episode ends as with the original meshes "
        f"({sum(row['episodes'] for row in experts)} episodes: {experts_run})"
        if all(row["episodes"] == row["same outcome"] for row in experts)
        else "some scripted-expert episodes end differently (see the table)"
    )
    measured = [row for row in rows if "speed-up" in row]
    speedups = ", ".join(f"{row['speed-up']:.1f}x on {row['scene']}" for row in measured)
    write_result(
        "decimation_speed",
        title="Decimated meshes in fast rendering (CPU)",
        claim=(
            f"With mesh_budget={args.budget}, fast rendering runs {speedups}, in steps per CPU "
            "second against fast rendering with the original meshes (same seeds and actions, "
            f"interleaved blocks); physics unchanged, and {experts_text}."
        ),
        metric="decimated / original steps per CPU second (lowest)",
        unit="x",
        per_seed={"run": min(row["speed-up"] for row in measured)},
        rows=rows,
    )


if __name__ == "__main__":
    main()
