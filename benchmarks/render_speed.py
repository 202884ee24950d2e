"""Frames per second of MuJoCo offscreen rendering, fast vs full quality, side by side.

Renders PandaPickCubeVision's cameras (the robot, gripper and cube scene from gym-hil) at 128 and
224 px with one and two cameras. Fast quality includes its decimated meshes (``mesh_budget``'s
default; ``benchmarks/decimation_speed.py`` measures their share). Fast and full are measured in
interleaved rounds so that load from other processes affects both alike; the ratio is the number
to read.

    .venv/bin/python benchmarks/render_speed.py [--frames 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from _machine import describe_machine  # noqa: E402
from _results import write_result  # noqa: E402

import vla_gym  # noqa: E402, F401  (registers the IDs, picks a headless GL backend)
from vla_gym.core.decimate import DEFAULT_MESH_BUDGET  # noqa: E402


def frames_per_second(env: gym.Env, frames: int) -> float:
    base = env.unwrapped
    base._get_images()  # warm-up: first frame compiles shaders
    start = time.perf_counter()
    for _ in range(frames):
        base._get_images()
    return frames * len(base.cameras) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    args = parser.parse_args()

    print(f"machine: {describe_machine()}")
    print(f"{'size':>5} {'cameras':>8} {'full fps':>9} {'fast fps':>9} {'fast/full':>10}")
    rows = []
    for size in (128, 224):
        for env_id, n_cameras in (("VLA/PandaPickCube-v0", 1), ("VLA/PandaPickCubeVision-v0", 2)):
            envs = {
                quality: gym.make(env_id, image_size=size, render_quality=quality)
                for quality in ("full", "fast")
            }
            for env in envs.values():
                env.reset(seed=0)
            rates: dict[str, list[float]] = {"full": [], "fast": []}
            for _ in range(args.rounds):
                for quality, env in envs.items():
                    # full quality is ~10x slower: fewer frames keep the rounds balanced in time
                    n = max(3, args.frames // 10) if quality == "full" else args.frames
                    rates[quality].append(frames_per_second(env, n))
            full, fast = np.median(rates["full"]), np.median(rates["fast"])
            print(f"{size:>5} {n_cameras:>8} {full:>9.1f} {fast:>9.1f} {fast / full:>9.1f}x")
            rows.append(
                {
                    "size (px)": size,
                    "cameras": n_cameras,
                    "full fps": float(full),
                    "fast fps": float(fast),
                    "fast / full": float(fast / full),
                }
            )
            for env in envs.values():
                env.close()
    lowest = min(row["fast / full"] for row in rows)
    write_result(
        "render_speed",
        title="Rendering: fast vs full quality (PandaPickCube scene)",
        claim=(
            "Fast rendering (no shadow map, reflections or multisampling; meshes decimated to "
            f"{DEFAULT_MESH_BUDGET} triangles) renders the "
            f"PandaPickCube cameras at least {lowest:.1f}x as many frames per second as the "
            "scene's full quality, at 128 and 224 px with one and two cameras (medians of "
            f"{args.rounds} interleaved rounds)."
        ),
        metric="fast / full (lowest)",
        unit="x",
        per_seed={"run": lowest},
        rows=rows,
    )


if __name__ == "__main__":
    main()
