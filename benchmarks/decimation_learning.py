"""Does a policy trained on original-mesh images score the same on decimated-mesh images?

On ``VLA/PandaPickCubeVision-v0`` (front + wrist images at 64 px, ``render_quality="fast"``),
with the flow VLA of the trainer config ``flow_panda_vision_ppo_cpu``:

1. collect ``--demos`` scripted-expert episodes with the original meshes (``mesh_budget=None``);
   the expert is speed-capped and the executed actions carry DART noise, the vision SFT recipe
   of ``benchmarks/learning_flow.py``;
2. SFT (flow matching) for ``--sft-steps`` steps on those images;
3. evaluate that one checkpoint (deterministic ODE sampling) on the same ``--eval-episodes``
   held-out seeds twice: rendered with the original meshes and with meshes decimated to
   ``--budget`` triangles (the fast profile's default).

The difference of the two success rates is reported with its binomial standard error
``sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)``. Every stage keeps its output in ``--work``; a rerun
skips the stages already done (resumable). The result goes to
``benchmarks/results/decimation_learning.json``.

    python benchmarks/decimation_learning.py --work runs/decimation_learning --eval-episodes 200
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _learning_stages as stages  # noqa: E402
from _results import write_result  # noqa: E402
from _state import load_state, save_state  # noqa: E402

from vla_gym.core.decimate import DEFAULT_MESH_BUDGET  # noqa: E402

CONFIG = "flow_panda_vision_ppo_cpu"
# the vision SFT recipe of benchmarks/learning_flow.py: a speed-capped expert with DART noise
EXPERT_KWARGS = {"max_speed": 0.025}
ACTION_NOISE = 0.1


def train_config(args: argparse.Namespace, mesh_budget: int | None):
    """The trainer config with fast rendering at 64 px and the given mesh budget."""
    from trainers.config import load_config

    budget = "null" if mesh_budget is None else str(mesh_budget)
    return load_config(
        CONFIG,
        [
            "env.kwargs.image_size=64",
            "env.kwargs.render_quality=fast",
            f"env.kwargs.mesh_budget={budget}",
            f"env.eval_num_envs={args.eval_envs}",
            "env.backend=sync",  # one process: the envs step in turn
            f"runner.torch_threads={args.torch_threads}",
            "runner.progress_bar='off'",
        ],
    )


def stage_collect(args: argparse.Namespace, work: Path) -> Path:
    """Expert demos rendered with the original meshes (continues a partial dataset)."""
    env = train_config(args, None).env
    return stages.collect_successes(
        env,
        work / "demos",
        episodes=args.demos,
        num_envs=2,
        seed=0,
        action_noise=ACTION_NOISE,
        expert=EXPERT_KWARGS,
    )


def stage_sft(args: argparse.Namespace, work: Path, demos: Path):
    """The SFT policy (trained, or resumed from its checkpoint until ``--sft-steps``)."""
    from trainers.demos import DemoDataset

    config = train_config(args, None)
    policy, action_space = stages.make_config_policy(config, seed=0)
    dataset = DemoDataset(demos)
    sft = stages.sft_config(
        args.sft_steps,
        batch_size=32,
        lr=1e-3,
        warmup_steps=50,
        image_shift=4,
    )
    stages.train_sft_resuming(policy, dataset, sft, action_space, work / "sft" / "latest.pt")
    return policy.eval(), {"episodes": len(dataset), "steps": dataset.num_samples}


def evaluate(args: argparse.Namespace, policy, mesh_budget: int | None) -> dict[str, float]:
    """Deterministic success of ``policy`` on the held-out seeds with this mesh budget."""
    config = train_config(args, mesh_budget)
    return stages.evaluate(config, policy, args.eval_episodes, stages.EVAL_SEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "decimation_learning")
    parser.add_argument("--budget", type=int, default=DEFAULT_MESH_BUDGET)
    parser.add_argument("--demos", type=int, default=30)
    parser.add_argument("--sft-steps", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--eval-envs", type=int, default=4)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = load_state(state_path)

    start = time.perf_counter()
    demos = stage_collect(args, work)
    print(f"demos: {demos} ({time.perf_counter() - start:.0f} s)", flush=True)
    policy, state["demos"] = stage_sft(args, work, demos)
    print(f"sft: done ({time.perf_counter() - start:.0f} s)", flush=True)
    for label, budget in (("original", None), ("decimated", args.budget)):
        done = state.get(label, {})
        # evaluated already: the same episodes of a checkpoint with as many SFT steps
        if (done.get("episodes"), done.get("sft_steps")) != (args.eval_episodes, args.sft_steps):
            state[label] = {**evaluate(args, policy, budget), "sft_steps": args.sft_steps}
            save_state(state_path, state)
        print(f"{label} meshes: {state[label]}", flush=True)

    n = args.eval_episodes
    p1, p2 = state["original"]["success"], state["decimated"]["success"]
    difference = 100 * (p2 - p1)
    error = 100 * math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    print(f"difference: {difference:+.1f} ± {error:.1f} points (binomial standard error)")
    rows = [
        {
            "rendering": f"fast, {name} meshes",
            "mesh_budget": budget,
            "success_%": 100 * state[label]["success"],
            "mean return": state[label]["return"],
            "episodes": state[label]["episodes"],
        }
        for label, name, budget in (
            ("original", "original", None),
            ("decimated", "decimated", args.budget),
        )
    ]
    write_result(
        "decimation_learning",
        title="A policy trained on original meshes, evaluated on decimated meshes",
        claim=(
            f"A flow VLA trained by SFT on PandaPickCubeVision images (64 px, fast rendering) "
            f"with the original meshes succeeds on {100 * p1:.1f} % of {n} held-out seeds with "
            f"them and on {100 * p2:.1f} % of the same seeds with meshes decimated to "
            f"{args.budget} triangles: {difference:+.1f} ± {error:.1f} points (binomial "
            "standard error)."
        ),
        metric="difference (points)",
        unit="points",
        per_seed={
            "run": {
                "original success (%)": 100 * p1,
                "decimated success (%)": 100 * p2,
                "difference (points)": difference,
                "standard error (points)": error,
            }
        },
        rows=rows,
        starts_from=(
            f"one SFT checkpoint: {state['demos']['episodes']} demos of the speed-capped expert "
            f"(max_speed {EXPERT_KWARGS['max_speed']}) with DART noise {ACTION_NOISE} on env "
            f"seeds 0.. rendered with the original meshes, {args.sft_steps} SFT steps"
        ),
    )


if __name__ == "__main__":
    main()
