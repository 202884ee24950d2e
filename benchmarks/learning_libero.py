"""Learning benchmark on LIBERO: expert demos -> SFT -> GRPO of a flow-matching VLA.

Config ``libero_object3_grpo_flow_cpu``: tasks 0-2 of LIBERO-Object, 64 px agentview + wrist
images in fast render quality (decimated meshes), the nano flow policy. Each task's official
init states 0-24 train (demos and RL episodes); 25-49 are held out: an evaluation runs every
held-out (task, init state) once (75 episodes, deterministic ODE sampling, eval seeds 0-74).

Per training seed N, in ``<work>/seed<N>``:

1. collect ``--demos`` scripted-expert episodes on the training init states (env seeds from
   ``N * 10000`` on); the expert's success rate is recorded and SFT uses its successful ones;
2. SFT (flow matching) for ``--sft-steps`` steps with seed N;
3. evaluate the SFT policy on the held-out init states;
4. GRPO (``runner.seed=N``) from the SFT weights until ``--rl-iterations`` iterations or
   ``--rl-minutes`` of training wall time (summed over resumed launches), with a checkpoint
   after every iteration;
5. evaluate the RL policy on the same held-out init states.

Every stage records its result in ``<work>/seed<N>/state.json`` and is skipped once done, so
re-running the same command resumes a killed run (losing at most one RL iteration). When every
seed has finished, per-seed and per-task success before and after RL, their mean and sample
standard deviation go to ``benchmarks/results/<name>.json``; ``--report-only`` prints the tables
and writes the result from disk. The per-unit costs (env steps/s per stage, seconds per SFT step,
RL iteration split into env / policy / update) are recorded too.

LIBERO assets: ``--libero-assets`` or ``$VLA_GYM_LIBERO_ASSETS``.

    nice -n 10 python benchmarks/learning_libero.py --seeds 0 1 2
    python benchmarks/learning_libero.py --config libero_object3_grpo_flow --device cuda  # GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _learning_stages as stages  # noqa: E402
from _state import save_state  # noqa: E402

DEFAULT_CONFIG = "libero_object3_grpo_flow_cpu"
EVAL_SEED = 0  # seeds 0..74 run each held-out (task, init state) once (LiberoEnv.reset)
DEMO_ENVS = 3  # one per task at the first (seeded) reset; later resets draw task and state


def train_config(args: argparse.Namespace, work: Path, extra: Sequence[str] = ()):
    from trainers.config import load_config

    assets = [f"env.kwargs.libero_assets={args.libero_assets}"] if args.libero_assets else []
    overrides = [
        *assets,
        *([f"env.eval_episodes={args.eval_episodes}"] if args.eval_episodes else []),
        f"runner.log_dir={work}",
        "runner.progress_bar='off'",
        f"runner.torch_threads={args.torch_threads}",
        f"runner.seed={args.seed}",
        *args.overrides,
        *extra,
    ]
    return load_config(args.config, overrides)


def evaluate(config, policy) -> dict[str, Any]:
    """Success on the held-out init states, overall and per task (deterministic actions)."""
    from trainers.evaluate import evaluate_policy, make_eval_collector

    collector = make_eval_collector(config, next(policy.parameters()).device)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        stats = evaluate_policy(collector, policy, config.env.eval_episodes, seed=EVAL_SEED)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    finally:
        collector.close()
    per_task: dict[str, list[float]] = {}
    for task, success in zip(stats.extra["task_id"], stats.success_once, strict=False):
        per_task.setdefault(str(int(task)), []).append(success)
    return {
        "success": float(np.mean(stats.success_once)),
        "per_task": {task: float(np.mean(values)) for task, values in sorted(per_task.items())},
        "episodes": stats.count,
        "env_steps": stats.env_steps,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def stage_collect(args: argparse.Namespace, work: Path, state: dict[str, Any]) -> Path:
    from trainers.collect import collect
    from trainers.config import env_kwargs
    from trainers.demos import read_index

    out = work / "demos"
    if "demos" in state:
        return out
    config = train_config(args, work)
    kwargs = env_kwargs(config.env)
    if args.demo_max_steps:
        kwargs["max_steps"] = args.demo_max_steps
    start, cpu = time.perf_counter(), time.process_time()
    # failures are kept on disk (SFT reads only the successful ones) to measure the expert
    collect(
        config.env.id,
        args.demos,
        str(out),
        num_envs=DEMO_ENVS,
        seed=stages.DEMO_SEED_STRIDE * args.seed,
        only_success=False,
        action_noise=args.action_noise,
        env_kwargs=kwargs,
        verbose=False,
        progress="off",
    )
    records = read_index(out)
    steps = sum(record["length"] for record in records)
    state["demos"] = {
        "episodes": len(records),
        "expert_success": float(np.mean([record["success"] for record in records])),
        "env_steps": steps,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }
    return out


def stage_sft(args: argparse.Namespace, work: Path, state: dict[str, Any], demos: Path) -> Path:
    from trainers.demos import DemoDataset

    path = work / "sft" / "latest.pt"
    if state.get("sft", {}).get("steps") == args.sft_steps and path.exists():
        return path
    config = train_config(args, work)
    policy, action_space = stages.make_config_policy(config, seed=args.seed)
    dataset = DemoDataset(demos)  # the successful episodes
    sft = stages.sft_config(
        args.sft_steps,
        batch_size=args.sft_batch_size,
        lr=1e-3,
        warmup_steps=min(50, args.sft_steps // 10),
        image_shift=4,
        seed=args.seed,
    )
    start, cpu = time.perf_counter(), time.process_time()
    history = stages.train_sft_resuming(
        policy.to(args.device), dataset, sft, action_space, path, device=args.device
    )
    state["sft"] = {
        "steps": args.sft_steps,
        "episodes": len(dataset),
        "samples": dataset.num_samples,
        # of this launch (a resumed SFT counts only its remaining steps)
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "curve": stages.sft_curve(history),
    }
    state.pop("sft_eval", None)  # new weights
    return path


def load_sft_policy(config, path: Path, device: str):
    from trainers import checkpoint

    policy, _ = stages.make_config_policy(config)
    policy.load_state_dict(checkpoint.policy_state(checkpoint.load(path)), strict=True)
    return policy.to(device).eval()


def stage_rl(args: argparse.Namespace, work: Path, state: dict[str, Any], sft_path: Path) -> None:
    config = train_config(args, work, stages.rl_overrides(sft_path, args.rl_iterations, "rl"))
    with stages.rl_trainer(config) as trainer:
        curve = state.setdefault("rl_curve", [])
        del curve[trainer.iteration :]  # points past the checkpoint a killed run resumes from
        cpu = time.process_time()
        for metrics in stages.timed_iterations(trainer, args.rl_iterations, args.rl_minutes):
            iteration_cpu = time.process_time() - cpu
            trainer.save()
            point = {
                "iteration": trainer.iteration,
                "env_steps": trainer.env_steps,
                "wall_minutes": trainer.elapsed / 60,
                "success": metrics.get("env/success_once", float("nan")),
                "env_seconds": metrics["time/env_step"],
                "policy_seconds": metrics["time/policy_inference"],
                # env resets (scene builds in the first iteration) and the rollout's bookkeeping
                "reset_seconds": metrics["time/rollout"]
                - metrics["time/env_step"]
                - metrics["time/policy_inference"],
                "update_seconds": metrics["time/iteration"] - metrics["time/rollout"],
                "iteration_seconds": metrics["time/iteration"],
                "cpu_seconds": iteration_cpu,  # this process's CPU time: the cost on one free core
            }
            if args.eval_every and trainer.iteration % args.eval_every == 0:
                point["eval_success"] = evaluate(config, trainer.rollout_policy)["success"]
                trainer.rollout_policy.train()
            curve.append(point)
            save_state(work / "state.json", state)
            print(
                f"  rl iter {trainer.iteration}: rollout success {point['success']:.2f}, "
                f"{point['iteration_seconds']:.0f} s (env {point['env_seconds']:.0f}, policy "
                f"{point['policy_seconds']:.0f}, update {point['update_seconds']:.0f}, CPU "
                f"{point['cpu_seconds']:.0f})"
                + (f", eval {point['eval_success']:.2f}" if "eval_success" in point else ""),
                flush=True,
            )
            cpu = time.process_time()  # saving and evaluating are not the iteration's cost
        trainer.collector.close()  # its envs and the evaluation's need not both be alive
        state["rl_eval"] = {
            **evaluate(config, trainer.rollout_policy.eval()),
            "iterations": trainer.iteration,
            "rl_env_steps": trainer.env_steps,
            "train_minutes": trainer.elapsed / 60,
        }


def unit_costs(state: dict[str, Any]) -> dict[str, float]:
    """Per-unit costs of this seed's stages (medians over RL iterations)."""
    costs: dict[str, float] = {}
    demos = state.get("demos")
    if demos and demos["env_steps"]:
        costs["demo env steps/s"] = demos["env_steps"] / demos["seconds"]
    sft = state.get("sft")
    if sft and sft["steps"] and sft["seconds"]:
        costs["SFT s/step"] = sft["seconds"] / sft["steps"]
    for key in ("sft_eval", "rl_eval"):
        if state.get(key) and state[key]["env_steps"]:
            costs[f"{key.removesuffix('_eval')} eval env steps/s"] = (
                state[key]["env_steps"] / state[key]["seconds"]
            )
    curve = state.get("rl_curve", [])
    if curve:
        for part in ("iteration", "cpu", "env", "policy", "reset", "update"):
            costs[f"RL {part} s/iteration"] = statistics.median(p[f"{part}_seconds"] for p in curve)
        steps = [b["env_steps"] - a["env_steps"] for a, b in zip(curve, curve[1:], strict=False)]
        steps = steps or [curve[0]["env_steps"]]
        costs["RL env steps/s"] = statistics.median(steps) / costs["RL iteration s/iteration"]
    return costs


def report(state: dict[str, Any]) -> None:
    demos, sft = state.get("demos"), state.get("sft")
    if demos:
        print(f"demos: {demos['episodes']} expert episodes, success {demos['expert_success']:.0%}")
    print("\n| stage | success (held-out init states) | per task | episodes |")
    print("|---|---|---|---|")
    for key, label in (("sft_eval", "SFT"), ("rl_eval", "+ GRPO")):
        result = state.get(key)
        if result:
            tasks = ", ".join(f"{t}: {v:.0%}" for t, v in result["per_task"].items())
            if key == "sft_eval" and sft:
                label += f" ({sft['steps']} steps)"
            if key == "rl_eval":
                label += f" ({result['iterations']} it., {result['train_minutes']:.0f} min)"
            print(f"| {label} | {result['success']:.0%} | {tasks} | {result['episodes']} |")
    for name, value in unit_costs(state).items():
        print(f"{name}: {value:.3g}")


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """Demos, SFT, evaluations and RL of one training seed, resuming from its state file."""
    work, state_path, state = stages.open_seed(args)
    if not args.report_only:
        start = time.perf_counter()
        print("collecting demonstrations ...", flush=True)
        demos = stage_collect(args, work, state)
        save_state(state_path, state)
        print(f"SFT ... ({time.perf_counter() - start:.0f} s)", flush=True)
        sft_path = stage_sft(args, work, state, demos)
        save_state(state_path, state)
        if "sft_eval" not in state:
            print(f"SFT evaluation ... ({time.perf_counter() - start:.0f} s)", flush=True)
            config = train_config(args, work)
            state["sft_eval"] = evaluate(config, load_sft_policy(config, sft_path, args.device))
            save_state(state_path, state)
        if stages.rl_to_continue(state.get("rl_eval"), args.rl_iterations, args.rl_minutes):
            print(f"RL ... ({time.perf_counter() - start:.0f} s)", flush=True)
            state.pop("rl_eval", None)
            stage_rl(args, work, state, sft_path)
        # wall time over all launches of this seed
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + time.perf_counter() - start
        save_state(state_path, state)
    report(state)
    return state


def write_json(args: argparse.Namespace, states: dict[int, dict[str, Any]]) -> Path | None:
    """The result file, once every seed has its SFT and final RL evaluation."""
    from _results import write_result

    if not stages.all_finished(states):
        return None
    per_seed = {}
    for seed, state in states.items():
        sft, rl = state["sft_eval"], state["rl_eval"]
        values = {
            "SFT success (%)": 100 * sft["success"],
            "RL success (%)": 100 * rl["success"],
            "gain": 100 * (rl["success"] - sft["success"]),
            "expert demo success (%)": 100 * state["demos"]["expert_success"],
            "RL iterations": rl["iterations"],
            "RL minutes": rl["train_minutes"],
        }
        for task in sft["per_task"]:
            values[f"task {task} SFT (%)"] = 100 * sft["per_task"][task]
            values[f"task {task} RL (%)"] = 100 * rl["per_task"].get(task, float("nan"))
        values.update(unit_costs(state))
        per_seed[seed] = values
    config = train_config(stages.seed_args(args, 0), Path(args.work))
    tasks = config.env.kwargs["task_ids"]
    sft_mean = stages.mean_of(per_seed, "SFT success (%)")
    rl_mean = stages.mean_of(per_seed, "RL success (%)")
    first = next(iter(states.values()))
    episodes = first["rl_eval"]["episodes"]
    return write_result(
        args.name or f"learning_{args.config.removesuffix('_cpu')}",
        title=f"Flow-matching VLA: SFT then GRPO on {config.env.id} tasks {tasks}",
        claim=(
            f"GRPO takes success on held-out init states from {sft_mean:.1f} % after SFT to "
            f"{rl_mean:.1f} % (mean over {len(states)} training seeds, {episodes} held-out "
            f"episodes each, config `{args.config}`)."
        ),
        metric="gain",
        unit="points",
        per_seed=per_seed,
        starts_from=(
            f"one SFT checkpoint per training seed N: {args.demos} scripted-expert episodes on "
            f"the training init states (env seeds from N * {stages.DEMO_SEED_STRIDE}, action noise "
            f"{args.action_noise}), {args.sft_steps} SFT steps with seed N"
        ),
        env_steps=int(sum(state["rl_eval"]["rl_env_steps"] for state in states.values())),
        wall_seconds=sum(state.get("wall_seconds", 0.0) for state in states.values()),
        directory=Path(args.results_dir),
    )


def main(argv: list[str] | None = None) -> None:
    from _results import RESULTS_DIR

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--work", default="runs/learning_libero")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--demos", type=int, default=60, help="expert episodes per seed")
    parser.add_argument(
        "--action-noise", type=float, default=0.1, help="DART noise on the expert's actions"
    )
    parser.add_argument(
        "--demo-max-steps", type=int, default=0, help="demo episode limit (0: the config's)"
    )
    parser.add_argument("--sft-steps", type=int, default=3000)
    parser.add_argument("--sft-batch-size", type=int, default=32)
    parser.add_argument(
        "--rl-iterations", type=int, default=0, help="0: the config's runner.max_iterations"
    )
    parser.add_argument("--rl-minutes", type=float, default=90.0)
    parser.add_argument("--eval-every", type=int, default=0, help="RL iterations between evals")
    parser.add_argument(
        "--eval-episodes", type=int, default=0, help="0: the config's (every held-out trial)"
    )
    parser.add_argument("--libero-assets", default=os.environ.get("VLA_GYM_LIBERO_ASSETS", ""))
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="SFT and evaluation device (RL: the config's placement)"
    )
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--name", default="", help="result file stem")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. env.num_envs=6")
    args = parser.parse_args(argv)
    if not args.rl_iterations:  # the recipe holds the run's length (and its lr schedule's)
        config = train_config(stages.seed_args(args, 0), Path(args.work))
        args.rl_iterations = config.runner.max_iterations
    if not args.report_only:
        torch.set_num_threads(args.torch_threads)
    write_json(args, stages.run_seeds(args, run_seed))


if __name__ == "__main__":
    main()
