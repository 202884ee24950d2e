"""Data-parallel training rollout throughput: 1 vs 2 ranks on this machine.

Each configuration is one ``torchrun --standalone --nproc-per-node R -m trainers train`` run of
the PandaPickCube MLP PPO recipe with the same global ``env.num_envs`` (each of ``R`` ranks steps
``num_envs / R`` envs in its own process). Measured from the run's TensorBoard scalars, first
iteration (start-up) excluded, median over the other iterations:

* rollout env steps/s: the global env steps of an iteration / its rollout time (on rank 0; the
  ranks collect in lockstep),
* iteration env steps/s: the same over the whole iteration (rollout + update).

Configurations: 1 rank with its envs in-process (``env.backend=sync``), 2 ranks with theirs
in-process, and 1 rank with ``--workers`` env worker processes (``subproc``), the single-process
way to use several cores.

    nice -n 10 python benchmarks/distributed_rollout.py                 # writes the result
    python benchmarks/distributed_rollout.py --iterations 2 --num-envs 4 --num-steps 8 --no-result
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result  # noqa: E402

CONFIG = "panda_pick_cube_ppo_mlp_cpu"


def run(
    ranks: int,
    backend: str,
    args: argparse.Namespace,
    log_dir: Path,
    overrides: tuple[str, ...] = (),
    name: str = "",
) -> dict[str, float]:
    """One training run (``overrides``: more config settings); its median per-iteration
    throughput."""
    name = name or f"{ranks}rank_{backend}"
    per_rank = args.num_envs // ranks
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *("--nproc-per-node", str(ranks), "-m", "trainers", "train", "--config", CONFIG),
        f"runner.log_dir={log_dir}",
        f"runner.run_name={name}",
        f"runner.max_iterations={args.iterations}",
        f"runner.save_interval={args.iterations}",
        "runner.eval_interval=0",
        "runner.video_interval=0",
        "runner.progress_bar=off",
        "runner.torch_threads=1",
        f"env.num_envs={args.num_envs}",
        f"env.backend={backend}",
        f"env.envs_per_worker={max(1, per_rank // args.workers)}",
        f"rollout.num_steps={args.num_steps}",
        f"algorithm.global_batch_size={args.num_envs * args.num_steps}",
        f"algorithm.micro_batch_size={args.num_envs * args.num_steps}",
        "algorithm.update_epochs=1",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    scalars = read_scalars(log_dir / name)
    totals = scalars["train/env_steps"]
    steps = [b - a for a, b in zip([0.0, *totals[:-1]], totals, strict=True)]
    skip = 1 if len(steps) > 1 else 0  # the first iteration pays the start-up
    rollout = [s / t for s, t in zip(steps, scalars["time/rollout"], strict=True)][skip:]
    iteration = scalars["time/env_steps_per_second"][skip:]
    return {
        "ranks": ranks,
        "env backend": backend,
        "envs per rank": per_rank,
        "rollout env steps/s": round(statistics.median(rollout), 1),
        "iteration env steps/s": round(statistics.median(iteration), 1),
        "wall s": round(wall, 1),
    }


def read_scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        tag: [e.value for e in sorted(events.Scalars(tag), key=lambda e: e.step)]
        for tag in events.Tags()["scalars"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--num-envs", type=int, default=16, help="global env count")
    parser.add_argument("--num-steps", type=int, default=128, help="policy steps per rollout")
    parser.add_argument("--workers", type=int, default=2, help="env workers of the subproc run")
    parser.add_argument("--no-result", action="store_true", help="print only (smoke check)")
    args = parser.parse_args()
    if args.num_envs % 2:
        parser.error("--num-envs must be even (split over 2 ranks)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="distributed_rollout_") as tmp:
        for ranks, backend in ((1, "sync"), (2, "sync"), (1, "subproc")):
            rows.append(run(ranks, backend, args, Path(tmp)))
            print(rows[-1], flush=True)
    one, two, workers = (row["rollout env steps/s"] for row in rows)
    if args.no_result:
        return
    write_result(
        "distributed_rollout",
        title="Data-parallel training rollout: 1 vs 2 ranks (PandaPickCube, MLP PPO)",
        claim=(
            f"With {args.num_envs} envs in all, 2 ranks (torchrun, gloo) collect a training "
            f"rollout at {two:.0f} env steps/s, {two / one:.2f}x one rank's {one:.0f} "
            f"(one rank with {args.workers} env workers: {workers:.0f}) on "
            f"{os.cpu_count()} cores (medians over iterations 2..{args.iterations})."
        ),
        metric="2 ranks vs 1 rank",
        unit="x",
        per_seed={"run": two / one},
        rows=rows,
    )


if __name__ == "__main__":
    main()
