"""Learning benchmark: flow-matching VLA, SFT from a few expert demos, then RL (PPO + flow_sde).

On ``VLA/PandaPickCubeVision-v0`` (front + wrist images at 64 px, chunks of 5 actions), using the
trainer config ``flow_panda_vision_ppo_cpu``:

1. collect ``--demos`` scripted-expert episodes (``trainers.collect``, through the vector layer);
2. SFT (flow matching) for ``--sft-steps`` steps: deliberately weak, few demos;
3. evaluate the SFT policy (deterministic ODE sampling) on held-out seeds;
4. PPO with ``--method`` (flow_sde by default) from the SFT weights for ``--rl-iterations``
   iterations or ``--rl-minutes`` of training time (summed over resumed launches, evaluations
   excluded), evaluating every ``--eval-every`` iterations;
5. evaluate the RL policy on the same held-out seeds.

It also measures the stochastic-sampling overhead (``act`` with flow_sde / flow_noise vs the
deterministic ODE, same batch, interleaved repeats) and, from the trainer's timings, the share of
rollout wall time spent in policy inference (with ``pipeline_stage_num: 2``).

``--seeds 0 1 2`` runs the whole pipeline once per training seed, each in ``<work>/seed<N>``. The
seed varies every stage: the demos are collected from env seeds ``N * 10000`` onwards (unless
``--demos-dir`` gives one dataset to all seeds), SFT initialises and shuffles with it, and RL runs
with ``runner.seed=N``. Evaluation always uses the same held-out seeds (700000+), so the seeds
differ only in training. Every stage checkpoints into the seed's folder; re-running the same
command resumes (a run that ends early loses at most one RL iteration). When every seed has
finished, the per-seed SFT and RL success, their mean and sample standard deviation are written
to ``benchmarks/results/<name>.json`` (see ``benchmarks/_results.py``) with a plot of all seeds.
``--report-only`` prints the tables and writes the result from disk.

    nice -n 10 python benchmarks/learning_flow.py --work runs/learning_flow --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import shutil
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

import _learning_stages as stages  # noqa: E402  (benchmarks/ is on sys.path now)
from _state import save_state  # noqa: E402

DEFAULT_CONFIG = "flow_panda_vision_ppo_cpu"
VALIDATION_SEED = 800_000  # checkpoint selection (--validation), apart from the held-out seeds


def train_config(args: argparse.Namespace, work: Path, extra: Sequence[str] = ()):
    from trainers.config import load_config

    overrides = [  # envs, batch sizes and backend: the config's unless given
        *([f"env.num_envs={args.num_envs}"] if args.num_envs else []),
        *([f"env.backend={args.backend}"] if args.backend else []),
        f"env.eval_episodes={args.eval_episodes}",
        f"policy.noise_method={args.method}",
        f"runner.log_dir={work}",
        "runner.progress_bar='off'",
        f"runner.torch_threads={args.torch_threads}",
        f"runner.seed={args.seed}",
        *args.overrides,
        *extra,
    ]
    return load_config(args.config, overrides)


def stage_collect(args: argparse.Namespace, work: Path) -> Path:
    if args.demos_dir:
        return Path(args.demos_dir)
    env = train_config(args, work).env
    # a Meta-World task list: one env per task (env i starts on task i), so every task is covered
    tasks = env.kwargs.get("task")
    num_envs = len(tasks) if isinstance(tasks, list) else min(args.demos, 4)
    return stages.collect_seed_demos(args, env, work / "demos", num_envs)


def stage_sft(args: argparse.Namespace, work: Path, state: dict[str, Any], demos: Path) -> Path:
    from trainers.demos import DemoDataset

    config = train_config(args, work)
    path = work / "sft" / "latest.pt"
    policy, action_space = stages.make_config_policy(config, seed=args.seed)
    dataset = DemoDataset(demos)
    sft = stages.sft_config(
        args.sft_steps,
        batch_size=32,
        lr=1e-3,
        warmup_steps=50,
        image_shift=args.image_shift,
        seed=args.seed,
    )
    history = stages.train_sft_resuming(policy, dataset, sft, action_space, path)
    state["sft_curve"] = stages.sft_curve(history)
    state["sft_demos"] = {"episodes": len(dataset), "steps": dataset.num_samples}
    episodes = final_episodes(args)
    if state.get("sft_eval", {}).get("episodes") != episodes:  # new, or a larger final count
        state["sft_eval"] = stages.evaluate(config, policy.eval(), episodes)
    return path


def final_episodes(args: argparse.Namespace) -> int:
    """Episodes of the SFT and the final RL evaluation (the curve's use --eval-episodes)."""
    return args.final_eval_episodes or args.eval_episodes


def stage_rl(args: argparse.Namespace, work: Path, state: dict[str, Any], sft_path: Path) -> None:
    overrides = stages.rl_overrides(sft_path, args.rl_iterations, f"rl_{args.method}")
    config = train_config(args, work, overrides)
    with stages.rl_trainer(config) as trainer:
        curve = state.setdefault("rl_curve", [])
        # --validation: the curve's evaluations run on a validation split and the best
        # checkpoint by validation success (the SFT one included) is kept; the held-out split
        # only sees the final evaluations
        validation = train_config(args, work, args.validation) if args.validation else None
        best_path = work / "best.pt"
        if validation is not None and "best" not in state:
            score = stages.evaluate(
                validation, trainer.rollout_policy, args.eval_episodes, VALIDATION_SEED
            )
            shutil.copyfile(sft_path, best_path)
            state["best"] = {"iteration": 0, "env_steps": 0, "val_success": score["success"]}
            state["sft_validation"] = score["success"]
            trainer.rollout_policy.train()
        for metrics in stages.timed_iterations(trainer, args.rl_iterations, args.rl_minutes):
            point = {
                "iteration": trainer.iteration,
                "env_steps": trainer.env_steps,
                "wall_minutes": trainer.elapsed / 60,
                "success": metrics.get("env/success_once", float("nan")),
                "return": metrics.get("env/return", float("nan")),
                "inference_share": metrics["time/policy_inference"] / metrics["time/rollout"],
                "approx_kl": metrics.get("actor/approx_kl", float("nan")),
            }
            trainer.save()
            if args.eval_every and trainer.iteration % args.eval_every == 0:
                if validation is None:
                    point["eval_success"] = stages.evaluate(
                        config, trainer.rollout_policy, args.eval_episodes
                    )["success"]
                else:
                    point["val_success"] = stages.evaluate(
                        validation, trainer.rollout_policy, args.eval_episodes, VALIDATION_SEED
                    )["success"]
                    if point["val_success"] > state["best"]["val_success"]:
                        shutil.copyfile(trainer.latest_path, best_path)
                        state["best"] = {
                            "iteration": trainer.iteration,
                            "env_steps": trainer.env_steps,
                            "val_success": point["val_success"],
                        }
                trainer.rollout_policy.train()
            curve.append(point)
            save_state(work / "state.json", state)
            print(
                f"  rl iter {trainer.iteration}: train success {point['success']:.2f}, return "
                f"{point['return']:.2f}, inference share {point['inference_share']:.2f}, "
                f"kl {point['approx_kl']:.4f}"
                + (f", eval {point['eval_success']:.2f}" if "eval_success" in point else "")
                + (f", validation {point['val_success']:.2f}" if "val_success" in point else ""),
                flush=True,
            )
        trainer.collector.close()  # its env processes and the evaluation's need not both fit
        state["rl_eval"] = stages.evaluate(
            config, trainer.rollout_policy.eval(), final_episodes(args)
        )
        state["rl_eval"]["iterations"] = trainer.iteration
        state["rl_eval"]["env_steps"] = trainer.env_steps
        state["rl_eval"]["train_minutes"] = trainer.elapsed / 60
        if validation is not None:
            from trainers import checkpoint

            best = checkpoint.policy_state(checkpoint.load(best_path))
            trainer.rollout_policy.load_state_dict(best, strict=True)
            selected = stages.evaluate(config, trainer.rollout_policy.eval(), final_episodes(args))
            state["rl_eval_selected"] = {**selected, **state["best"]}  # its iteration, steps


def stage_overhead(
    args: argparse.Namespace, work: Path, demos: Path, sft_path: Path
) -> dict[str, float]:
    """Median wall time of act() per method on the same batch of 8 demo observations."""
    from trainers import checkpoint
    from trainers.demos import DemoDataset

    config = train_config(args, work)
    obs, _ = next(DemoDataset(demos).batches(8, 5, shuffle_buffer=64))
    weights = checkpoint.policy_state(checkpoint.load(sft_path))
    policies = {}
    for method in ("flow_sde", "flow_noise"):
        policy, _ = stages.make_config_policy(config, noise_method=method)
        policy.load_state_dict(weights, strict=True)
        policies[method] = policy.eval()
    times: dict[str, list[float]] = {"flow_ode": [], "flow_sde": [], "flow_noise": []}
    for _ in range(args.overhead_repeats):  # interleaved, so load changes hit all alike
        for name in times:
            policy = policies["flow_sde" if name == "flow_ode" else name]
            start = time.perf_counter()
            policy.act(obs, deterministic=name == "flow_ode")
            times[name].append(time.perf_counter() - start)
    ode = statistics.median(times["flow_ode"])
    return {
        "ode_ms": 1000 * ode,
        "sde_ms": 1000 * statistics.median(times["flow_sde"]),
        "noise_ms": 1000 * statistics.median(times["flow_noise"]),
        "sde_ratio": statistics.median(times["flow_sde"]) / ode,
        "noise_ratio": statistics.median(times["flow_noise"]) / ode,
    }


def report(state: dict[str, Any], work: Path) -> None:
    sft, rl = state.get("sft_eval"), state.get("rl_eval")
    demos = state.get("sft_demos", {})
    print("\n| stage | success (held-out seeds) | mean return | episodes |")
    print("|---|---|---|---|")
    if sft:
        print(
            f"| SFT ({demos.get('episodes', '?')} demos, {demos.get('steps', '?')} steps) "
            f"| {sft['success']:.0%} | {sft['return']:.2f} | {sft['episodes']} |"
        )
    algorithm = state.get("algorithm", "ppo").upper()
    if rl:
        print(
            f"| + {algorithm} {state.get('method', 'flow_sde')} ({rl['iterations']} it., "
            f"{rl['env_steps']} env steps, {rl['train_minutes']:.0f} min) "
            f"| {rl['success']:.0%} | {rl['return']:.2f} | {rl['episodes']} |"
        )
    selected = state.get("rl_eval_selected")
    if selected:
        print(
            f"| + {algorithm}, the checkpoint best on validation (iteration "
            f"{selected['iteration']}, validation {selected['val_success']:.0%}) "
            f"| {selected['success']:.0%} | {selected['return']:.2f} | {selected['episodes']} |"
        )
    if sft and rl:
        print(f"\nchange: {100 * (rl['success'] - sft['success']):+.0f} points")
    if sft and selected:
        print(f"change (selected): {100 * (selected['success'] - sft['success']):+.0f} points")
    curve = state.get("rl_curve", [])
    if curve:
        share = float(np.mean([p["inference_share"] for p in curve]))
        print(f"policy inference share of rollout wall time (pipeline_stage_num 2): {share:.0%}")
    overhead = state.get("overhead")
    if overhead:
        print(
            f"act() on 8 obs: ODE {overhead['ode_ms']:.1f} ms, "
            f"flow_sde {overhead['sde_ms']:.1f} ms "
            f"({overhead['sde_ratio']:.2f}x), flow_noise {overhead['noise_ms']:.1f} ms "
            f"({overhead['noise_ratio']:.2f}x)"
        )
    plot(state, work / "learning_flow.png")


def plot(state: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if state.get("sft_curve"):
        steps, losses = zip(*state["sft_curve"], strict=True)
        axes[0].plot(steps, losses)
    axes[0].set(title="SFT flow-matching loss", xlabel="step", ylabel="loss")
    curve = state.get("rl_curve", [])
    if curve:
        x = [p["env_steps"] for p in curve]
        axes[1].plot(x, [p["success"] for p in curve], label="rollout success (stochastic)")
        evals = [(p["env_steps"], p["eval_success"]) for p in curve if "eval_success" in p]
        if evals:
            axes[1].plot(*zip(*evals, strict=True), "o-", label="eval success (ODE)")
        vals = [(p["env_steps"], p["val_success"]) for p in curve if "val_success" in p]
        if "sft_validation" in state:
            vals.insert(0, (0, state["sft_validation"]))
        if vals:
            axes[1].plot(*zip(*vals, strict=True), "s-", label="validation success (ODE)")
    # the held-out split: the SFT level, and the final evaluations where their checkpoints were
    held_out = "held-out" if "sft_validation" in state or "rl_eval_selected" in state else ""
    if state.get("sft_eval"):
        label = f"after SFT ({held_out})" if held_out else "after SFT"
        axes[1].axhline(state["sft_eval"]["success"], color="gray", ls="--", label=label)
    for key, marker, label in (("rl_eval", "D", "last"), ("rl_eval_selected", "*", "selected")):
        point = state.get(key)
        if point and held_out:
            axes[1].plot(
                point.get("env_steps", 0),
                point["success"],
                marker,
                ms=10,
                label=f"{label} checkpoint ({held_out})",
            )
    title = f"{state.get('algorithm', 'ppo').upper()} + {state.get('method', 'flow_sde')}"
    axes[1].set(title=title, xlabel="env steps", ylabel="success", ylim=(-0.02, 1.02))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> dict[int, dict[str, Any]]:
    from _results import RESULTS_DIR

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--work", default="runs/learning_flow")
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="trainer config of the flow policy"
    )
    stages.add_demo_sft_arguments(parser)
    parser.add_argument("--method", default="flow_sde", choices=["flow_sde", "flow_noise"])
    parser.add_argument("--rl-iterations", type=int, default=40)
    parser.add_argument("--rl-minutes", type=float, default=60.0)
    parser.add_argument("--eval-every", type=int, default=0, help="RL iterations between evals")
    parser.add_argument("--eval-episodes", type=int, default=24)
    parser.add_argument(
        "--validation",
        action="append",
        default=[],
        metavar="OVERRIDE",
        help="a config override of a validation split, repeatable (e.g. Meta-World: "
        "'env.eval_kwargs={trial_seed: 2}'): the curve's evaluations use it and the best "
        "checkpoint on it is evaluated on the held-out split too",
    )
    parser.add_argument(
        "--final-eval-episodes",
        type=int,
        default=0,
        help="episodes of the SFT and final evaluations (0: --eval-episodes)",
    )
    parser.add_argument("--num-envs", type=int, default=0, help="0: the config's env.num_envs")
    parser.add_argument("--backend", default="", help="vector env backend (default: the config's)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--overhead-repeats", type=int, default=30)
    stages.add_seeds_argument(parser)
    parser.add_argument(
        "--name", default="", help="result file stem (default: learning_flow_<config>)"
    )
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. policy.image_grid=4")
    args = parser.parse_args(argv)
    if not args.report_only:
        torch.set_num_threads(args.torch_threads)
    states = stages.run_seeds(args, run_seed)
    write_json(args, states)
    return states


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """Demos, SFT, overhead and RL of one training seed (``args.seed``), resuming from disk."""
    work, state_path, state = stages.open_seed(args)
    if not args.report_only:
        state["method"] = args.method
        state["algorithm"] = train_config(args, work).algorithm.name
        start = time.perf_counter()
        print("collecting demonstrations ...", flush=True)
        demos = stage_collect(args, work)
        print(f"SFT ... ({time.perf_counter() - start:.0f} s)", flush=True)
        sft_path = stage_sft(args, work, state, demos)
        save_state(state_path, state)
        print(f"SFT success {state['sft_eval']['success']:.0%}", flush=True)
        if "overhead" not in state:
            state["overhead"] = stage_overhead(args, work, demos, sft_path)
            save_state(state_path, state)
        print(f"RL ... ({time.perf_counter() - start:.0f} s)", flush=True)
        if stages.rl_to_continue(state.get("rl_eval"), args.rl_iterations, args.rl_minutes):
            state.pop("rl_eval", None)
            stage_rl(args, work, state, sft_path)
        # wall time over all launches of this seed (demos, SFT, evaluations and RL)
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + time.perf_counter() - start
        save_state(state_path, state)
    report(state, work)
    return state


def write_json(args: argparse.Namespace, states: dict[int, dict[str, Any]]) -> None:
    """The result file, once every seed has its SFT and final RL evaluation."""
    from _results import write_result

    if not stages.all_finished(states):
        return
    per_seed = {}
    for seed, state in states.items():
        sft, rl = state["sft_eval"]["success"], state["rl_eval"]["success"]
        values = {"SFT success (%)": 100 * sft, "RL success (%)": 100 * rl}
        values["gain"] = 100 * (rl - sft)
        values["RL iterations"] = state["rl_eval"]["iterations"]  # fewer if --rl-minutes ran out
        if "rl_eval_selected" in state:
            values["selected checkpoint success (%)"] = 100 * state["rl_eval_selected"]["success"]
        if state.get("rl_curve"):
            shares = [p["inference_share"] for p in state["rl_curve"]]
            values["inference share of rollout (%)"] = 100 * float(np.mean(shares))
        if state.get("overhead"):
            values["act() flow_sde / ODE"] = state["overhead"]["sde_ratio"]
        per_seed[seed] = values
    first = next(iter(states.values()))
    config = train_config(stages.seed_args(args, 0), Path(args.work))
    name = args.name or f"learning_flow_{args.config.removeprefix('flow_').removesuffix('_cpu')}"
    algorithm, method = first.get("algorithm", "ppo").upper(), first.get("method", "flow_sde")
    sft_mean = stages.mean_of(per_seed, "SFT success (%)")
    rl_mean = stages.mean_of(per_seed, "RL success (%)")
    episodes = first["rl_eval"]["episodes"]
    source = stages.demos_source(args, first.get("sft_demos", {}))
    plot = Path(args.results_dir) / f"{name}.png"
    plot_seeds(states, plot)
    write_result(
        name,
        title=f"Flow-matching VLA: SFT then {algorithm} ({method}) on {config.env.id}",
        claim=(
            f"{algorithm} with {method} takes held-out success from {sft_mean:.1f} % after SFT "
            f"to {rl_mean:.1f} % (mean over {len(states)} training seeds, {episodes} held-out "
            f"episodes each, config `{args.config}`)."
        ),
        metric="gain",
        unit="points",
        per_seed=per_seed,
        plot=plot,
        starts_from=(
            f"one SFT checkpoint per training seed N: {source}, {args.sft_steps} SFT steps "
            "with seed N"
        ),
        env_steps=int(sum(state["rl_eval"]["env_steps"] for state in states.values())),
        wall_seconds=sum(state.get("wall_seconds", 0.0) for state in states.values()),
        directory=Path(args.results_dir),
    )


def plot_seeds(states: dict[int, dict[str, Any]], path: Path) -> None:
    """Held-out (or validation) success vs RL env steps, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.5))
    for seed, state in states.items():
        key = "val_success" if "sft_validation" in state else "eval_success"
        start = state.get("sft_validation", state["sft_eval"]["success"])
        curve = [(0, start)] + [(p["env_steps"], p[key]) for p in state["rl_curve"] if key in p]
        (line,) = axis.plot(*zip(*curve, strict=True), ".-", label=f"seed {seed}")
        rl = state["rl_eval"]
        axis.plot(rl["env_steps"], rl["success"], "D", color=line.get_color())
    validation = any("sft_validation" in state for state in states.values())
    axis.set(
        title="success per seed ("
        + ("validation curve, " if validation else "")
        + "diamond: final held-out)",
        xlabel="RL env steps",
        ylabel="success",
        ylim=(-0.02, 1.02),
    )
    axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
