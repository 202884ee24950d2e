"""Steps per CPU second with original vs decimated meshes in fast rendering, side by side.

For each scene, two envs with ``render_quality="fast"``: ``mesh_budget=None`` (the original
meshes) and ``mesh_budget=<budget>`` (meshes and planes above the budget drawn decimated, see
``vla_gym/core/decimate.py``). Both are reset with the same seed and stepped with the same random
actions, in interleaved blocks so that load from other processes hits both alike. Reported:

* steps per second of process CPU time (physics + rendering, all threads of the process);
* the triangles of the model's meshes before and after;
* the image cost: mean absolute pixel difference (0-255) between the two envs' frames over the
  trajectory (physics is identical, so the frames show the same states);
* PandaPickCube's scripted expert (``vla_gym.make_expert``): successes over the same seeds with
  and without decimation.

    python benchmarks/decimation_speed.py [--budget 500] [--blocks 4] [--block-steps 15]

LIBERO needs its asset pack (``--libero-assets`` or ``$VLA_GYM_LIBERO_ASSETS``); without it the
LIBERO row is skipped.
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


def expert_successes(budget: int | None, episodes: int) -> int:
    env_id = "VLA/PandaPickCubeVision-v0"
    env = gym.make(env_id, render_quality="fast", mesh_budget=budget, image_size=64)
    expert = vla_gym.make_expert(env_id)
    successes = 0
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        expert.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
        successes += bool(info["success_once"])
    env.close()
    return successes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_MESH_BUDGET)
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks per scene")
    parser.add_argument("--block-steps", type=int, default=15, help="env steps per block")
    parser.add_argument("--expert-episodes", type=int, default=5)
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
    experts = {
        label: expert_successes(b, args.expert_episodes)
        for label, b in (("original", None), ("decimated", args.budget))
    }
    print(f"PandaPickCube expert successes over {args.expert_episodes} seeds: {experts}")
    rows.append(
        {
            "scene": f"PandaPickCube expert, seeds 0-{args.expert_episodes - 1}",
            "original successes": experts["original"],
            "decimated successes": experts["decimated"],
        }
    )
    measured = [row for row in rows if "speed-up" in row]
    speedups = ", ".join(f"{row['speed-up']:.1f}x on {row['scene']}" for row in measured)
    write_result(
        "decimation_speed",
        title="Decimated meshes in fast rendering (CPU)",
        claim=(
            f"With mesh_budget={args.budget}, fast rendering runs {speedups}, in steps per CPU "
            "second against fast rendering with the original meshes (same seeds and actions, "
            "interleaved blocks); physics and the PandaPickCube expert's successes unchanged."
        ),
        metric="decimated / original steps per CPU second (lowest)",
        unit="x",
        per_seed={"run": min(row["speed-up"] for row in measured)},
        rows=rows,
    )


if __name__ == "__main__":
    main()
