"""Meta-World env steps per second: one 128 px camera, fast vs full rendering, and vectorised.

Single env (``VLA/MetaWorld-MT50-v0``, random actions, resets included as they occur):
``obs_mode="flat"`` (no rendering), one ``corner2`` camera at fast quality and at full quality,
measured in interleaved rounds so that load from other processes hits all alike (median of the
rounds; read the ratios). Then the same fast-quality env through ``vla_gym.make_vec`` with the
sync and the subprocess backends (env steps/s = envs x vector steps/s). The table also goes to
``benchmarks/results/metaworld_speed.json`` (``benchmarks/_results.py``).

    nice -n 10 .venv/bin/python benchmarks/metaworld_speed.py [--steps 200] [--num-envs 4]
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

import vla_gym  # noqa: E402  (registers the IDs, picks a headless GL backend)

ENV_ID = "VLA/MetaWorld-MT50-v0"


def single_env_rate(env: gym.Env, steps: int) -> float:
    """Env steps/s of ``steps`` random steps (resetting at episode ends, resets timed too)."""
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_rate(backend: str, num_envs: int, steps: int, image_size: int) -> float:
    envs = vla_gym.make_vec(
        ENV_ID, num_envs, backend=backend, image_size=image_size, render_quality="fast"
    )
    try:
        envs.reset(seed=0)
        envs.action_space.seed(0)
        envs.step(envs.action_space.sample())  # warm-up (first frames, worker start)
        start = time.perf_counter()
        for _ in range(steps):
            envs.step(envs.action_space.sample())
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="fast/flat steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-envs", type=int, default=4, help="envs in the vector runs")
    parser.add_argument("--vector-steps", type=int, default=50, help="vector steps per run")
    args = parser.parse_args()

    print(f"machine: {describe_machine()}")
    settings = {
        "flat (no images)": {"obs_mode": "flat"},
        "1 camera, fast": {"render_quality": "fast"},
        "1 camera, full": {"render_quality": "full"},
    }
    envs = {
        name: gym.make(ENV_ID, image_size=args.image_size, **kwargs)
        for name, kwargs in settings.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in envs}
    for env in envs.values():
        env.reset(seed=0)
        env.action_space.seed(0)
        env.step(env.action_space.sample())  # warm-up: first frame compiles shaders
    for _ in range(args.rounds):
        for name, env in envs.items():
            # full quality is ~10x slower: fewer steps keep the rounds balanced in time
            steps = max(5, args.steps // 10) if name.endswith("full") else args.steps
            rates[name].append(single_env_rate(env, steps))
    for env in envs.values():
        env.close()
    median = {name: float(np.median(values)) for name, values in rates.items()}
    fast = median["1 camera, fast"]

    for backend in ("sync", "subproc"):
        name = f"make_vec {backend}, {args.num_envs} envs, fast"
        median[name] = vector_rate(backend, args.num_envs, args.vector_steps, args.image_size)

    print(f"\n{ENV_ID}, corner2 at {args.image_size} px, random actions")
    print("| setting | env steps/s | vs 1 camera fast |\n|---|---|---|")
    for name, rate in median.items():
        print(f"| {name} | {rate:.1f} | {rate / fast:.2f}x |")
    ratio = fast / median["1 camera, full"]
    write_result(
        "metaworld_speed",
        title=f"Meta-World speed ({ENV_ID}, one {args.image_size} px camera)",
        claim=(
            f"Fast rendering makes a Meta-World step with one {args.image_size} px corner2 camera "
            f"{ratio:.1f}x as fast as full quality (random actions, resets included, medians of "
            f"{args.rounds} interleaved rounds)."
        ),
        metric="fast / full",
        unit="x",
        per_seed={"run": ratio},
        rows=[
            {"setting": name, "env steps/s": rate, "vs 1 camera fast": rate / fast}
            for name, rate in median.items()
        ],
    )


if __name__ == "__main__":
    main()
