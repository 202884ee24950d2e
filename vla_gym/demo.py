"""Scripted rollout of every registered ID: one mp4 per ID and a success table.

    python -m vla_gym.demo [--ids VLA/PandaPickCube-v0 ...] [--episodes 1] [--out outputs/demo]

Each ID runs its scripted expert when one exists (``vla_gym.make_expert``) and a uniform random
policy otherwise, for at most ``--max-steps`` steps an episode (CALVIN's 5-task chains need more
than the default to finish; their return counts the subtasks solved). IDs whose simulator is not
installed (or not runnable here, like BEHAVIOR without Isaac Sim) are listed as skipped with the
reason.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

import vla_gym
from vla_gym.experts import make_expert

# IDs that need a choice to be made: the single-task Meta-World ID runs one task.
DEMO_KWARGS = {"VLA/MetaWorld-v0": {"task": "pick-place"}}


def run_id(env_id: str, episodes: int, max_steps: int, out: Path, seed: int) -> dict:
    """Roll out ``env_id`` and write its video; returns one row of the table."""
    row = {"id": env_id, "policy": "-", "episodes": 0, "success": float("nan"), "steps": 0}
    row["return"] = float("nan")
    try:
        env = gym.make(env_id, render_mode="rgb_array", **DEMO_KWARGS.get(env_id, {}))
    except Exception as exc:  # a missing simulator or runtime: report, keep going
        row["note"] = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    try:
        expert = make_expert(env_id, action_chunk=getattr(env.unwrapped, "action_chunk", 1))
        row["policy"] = "expert"
    except ValueError:
        expert, row["policy"] = None, "random"
    env.action_space.seed(seed)
    successes, returns, frames, start = [], [], [], time.perf_counter()
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        if expert is not None:
            expert.reset()
        frames.append(env.render())
        returns.append(0.0)
        for _ in range(max_steps):
            action = env.action_space.sample() if expert is None else expert.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            returns[-1] += float(reward)
            frames.append(env.render())
            row["steps"] += 1
            if terminated or truncated:
                break
        successes.append(bool(info.get("success_once", False)))
    env.close()
    video = out / (env_id.replace("/", "_") + ".mp4")
    fps = env.metadata.get("render_fps", 10)
    imageio.mimsave(
        video, [_even(frame) for frame in frames], fps=min(int(fps), 30), macro_block_size=1
    )
    row.update(
        episodes=episodes,
        success=float(np.mean(successes)),
        **{"return": float(np.mean(returns))},
        note=f"{video} ({time.perf_counter() - start:.0f} s)",
    )
    return row


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 needs even frame sizes."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", nargs="*", default=None, help="IDs to run (default: all)")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=600, help="step cap per episode")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for env_id in args.ids or vla_gym.registered_ids():
        rows.append(run_id(env_id, args.episodes, args.max_steps, args.out, args.seed))
        row = rows[-1]
        print(f"{row['id']:<34} {row['policy']:<7} success {row['success']:.2f}  {row['note']}")
    print("\n| ID | policy | episodes | success_once | return | steps | video / note |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['id']} | {row['policy']} | {row['episodes']} | {row['success']:.2f} "
            f"| {row['return']:.2f} | {row['steps']} | {row['note']} |"
        )
    return rows


if __name__ == "__main__":
    main()
