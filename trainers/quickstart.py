"""The README's main job: SFT a flow-matching VLA on a few expert demos, then PPO, before/after.

    python -m trainers.quickstart [--seed 0] [--out runs/quickstart] [--demos 15] \
        [--sft-steps 600] [--rl-iterations 40] [--eval-episodes 100]

On ``VLA/PandaPickCube-v0`` (flat state observation, chunks of 5 actions, no rendering) with the
``flow_panda_state_ppo_cpu`` recipe:

1. collect ``--demos`` successful episodes of the speed-capped scripted expert with DART noise
   (``trainers.collect``; env seeds ``seed * 10000`` on);
2. SFT (flow matching) of the "nano" flow policy on them: a few demos and steps, so the policy
   reaches the cube but often misses the grasp;
3. evaluate it: deterministic ODE sampling on ``--eval-episodes`` held-out seeds;
4. PPO with ``flow_sde`` from the SFT weights for ``--rl-iterations`` iterations on the
   ``progress`` reward (the change of the dense reward's potential: a lift earns up to 1.0,
   hovering by the cube at most 0.3), success ending the episode as in evaluation;
5. keep the checkpoint best on ``--validation-episodes`` validation seeds (checked every
   ``--validate-every`` iterations, the SFT weights included), evaluate it on the same
   held-out seeds and print the before/after table (and the last checkpoint's success).

``--seed`` seeds every stage (demo layouts, SFT, PPO); the held-out seeds are the same for every
seed. Everything is written under ``--out`` (demos, SFT and PPO checkpoints, TensorBoard logs,
``result.json``); a second run starts afresh. ``dotted.key=value`` overrides of the recipe
follow the options, env kwargs as in every command (``env.kwargs.KEY=VALUE`` or
``--env-kwargs '{KEY: VALUE}'``).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.cli import mapping_overrides
from trainers.config import TrainConfig, load_config
from trainers.tracking import ProgressBar, progress_bar_enabled
from vla_gym.cli import add_env_kwargs_flag, parse_mapping

CONFIG = "flow_panda_state_ppo_cpu"
EVAL_SEED = 900_000  # held out from the demos and the PPO rollouts of every seed below 90
VALIDATION_SEED = 800_000  # checkpoint selection: apart from the held-out seeds
DEMO_SEED_STRIDE = 10_000  # seed s collects its demos on env seeds s * 10000, s * 10000 + 1, ...
# Slow, noisy-but-corrected demos: each shows many small corrective moves near the cube, which
# teaches far more per episode than the default expert's few large jumps.
EXPERT_KWARGS = {"max_speed": 0.025}
DEMO_ACTION_NOISE = 0.1


def make_config(args: argparse.Namespace, extra: list[str] = ()) -> TrainConfig:
    return load_config(
        CONFIG,
        [
            f"env.num_envs={args.num_envs}",
            f"env.eval_num_envs={min(args.num_envs, args.eval_episodes)}",
            f"env.backend={args.backend}",
            f"runner.log_dir={args.out}",
            "runner.progress_bar='off'",
            f"runner.torch_threads={args.torch_threads}",
            *mapping_overrides(parse_mapping(args.env_kwargs)),
            *args.overrides,
            *extra,
        ],
    )


def evaluate(
    config: TrainConfig, policy: torch.nn.Module, episodes: int, seed: int = EVAL_SEED
) -> dict[str, float]:
    """Deterministic success and mean return on ``episodes`` seeds from ``seed`` on (held-out by
    default)."""
    from trainers.evaluate import evaluate_policy, make_eval_collector

    collector = make_eval_collector(config, torch.device("cpu"))
    try:
        stats = evaluate_policy(collector, policy, episodes, seed=seed)
    finally:
        collector.close()
    return {"success": float(np.mean(stats.success_once)), "return": float(np.mean(stats.returns))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from trainers import checkpoint
    from trainers.collect import collect
    from trainers.config import env_kwargs
    from trainers.demos import DemoDataset
    from trainers.policies import make_policy
    from trainers.rollout import make_single_env
    from trainers.sft import SFTConfig, train_sft
    from trainers.train import Trainer

    started = time.perf_counter()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each time: the timings stay honest
    torch.set_num_threads(args.torch_threads)
    config = make_config(args)
    env = config.env

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", flush=True)

    say(f"collecting {args.demos} scripted-expert demos on {env.id} (seed {args.seed}) ...")
    collect(
        env.id,
        args.demos,
        str(out / "demos"),
        num_envs=min(args.demos, 4),
        seed=args.seed * DEMO_SEED_STRIDE,
        only_success=True,
        env_kwargs={**env.kwargs, "obs_mode": env.obs_mode},
        expert_kwargs=EXPERT_KWARGS,
        action_noise=DEMO_ACTION_NOISE,
        verbose=False,
    )
    dataset = DemoDataset(out / "demos")

    say(f"SFT for {args.sft_steps} steps on {dataset.num_samples} demo steps ...")
    probe = make_single_env(env.id, **env_kwargs(env))
    torch.manual_seed(args.seed)
    policy = make_policy(config.policy, probe.observation_space, probe.action_space)
    sft_path = out / "sft" / checkpoint.LATEST
    sft = SFTConfig(
        steps=args.sft_steps,
        batch_size=32,
        lr=1e-3,
        warmup_steps=min(50, args.sft_steps),
        eval_interval=0,
        save_interval=args.sft_steps,
        log_interval=max(1, args.sft_steps // 4),
        seed=args.seed,
    )
    history = train_sft(
        policy,
        dataset,
        sft,
        probe.action_space,
        checkpoint_path=sft_path,
        run_config=config.to_dict(),
    )
    probe.close()
    say(f"SFT loss {history[-1]['sft/loss']:.4f}; evaluating on {args.eval_episodes} episodes ...")
    results = {"SFT": evaluate(config, policy, args.eval_episodes)}
    say(f"SFT success {results['SFT']['success']:.0%}")

    rl_config = make_config(
        args,
        [
            f"runner.init_checkpoint_path={sft_path}",
            f"runner.max_iterations={args.rl_iterations}",
            f"runner.seed={args.seed}",
            "runner.run_name=ppo",
            "runner.eval_interval=0",
            "runner.video_interval=0",
        ],
    )
    say(f"PPO (flow_sde) for {args.rl_iterations} iterations of {env.num_envs} episodes ...")
    trainer = Trainer(rl_config)

    # Checkpoint selection on validation seeds (the SFT weights included), as a user would pick
    # the checkpoint to keep; the held-out seeds only ever score the chosen one and the last.
    def validate() -> float:
        score = evaluate(rl_config, trainer.policy, args.validation_episodes, VALIDATION_SEED)
        trainer.policy.train()
        return score["success"]

    best = (validate(), 0, copy.deepcopy(trainer.policy.state_dict()))
    bar = ProgressBar(progress_bar_enabled(args.progress), args.rl_iterations, 0)
    try:
        while trainer.iteration < args.rl_iterations:
            metrics = trainer.train_iteration()
            trainer.logger.log(metrics, trainer.env_steps)
            bar.update(metrics)
            if trainer.iteration % args.validate_every == 0:
                score = validate()
                if score > best[0]:
                    best = (score, trainer.iteration, copy.deepcopy(trainer.policy.state_dict()))
        trainer.save()
    finally:
        bar.close()
        trainer.collector.close()
        trainer.logger.close()
    say(f"PPO done after {trainer.env_steps} env steps; evaluating ...")
    last = evaluate(rl_config, trainer.policy, args.eval_episodes)
    validation_success, best_iteration, best_weights = best
    trainer.policy.load_state_dict(best_weights)
    results["SFT + PPO (flow_sde)"] = (
        last
        if best_iteration == trainer.iteration
        else evaluate(rl_config, trainer.policy, args.eval_episodes)
    )
    minutes = (time.perf_counter() - started) / 60

    print(
        f"\n{env.id}, flow-matching VLA ({config.policy.get('preset')}), seed {args.seed}, "
        f"{args.eval_episodes} held-out episodes:"
    )
    print("| stage | success | mean return |")
    print("|---|---|---|")
    for stage, result in results.items():
        print(f"| {stage} | {result['success']:.0%} | {result['return']:.2f} |")
    change = 100 * (results["SFT + PPO (flow_sde)"]["success"] - results["SFT"]["success"])
    print(
        f"\nPPO: {change:+.0f} points of success from {trainer.env_steps} env steps (checkpoint "
        f"of iteration {best_iteration}, best on {args.validation_episodes} validation episodes; "
        f"the last one: {last['success']:.0%}); total {minutes:.1f} min; outputs in {out}"
    )
    summary = {
        "seed": args.seed,
        "stages": results,
        "gain_points": change,
        "selected_iteration": best_iteration,
        "validation_success": validation_success,
        "last_iteration": last,
        "rl_env_steps": trainer.env_steps,
        "wall_minutes": minutes,
        "demos": args.demos,
        "sft_steps": args.sft_steps,
        "rl_iterations": args.rl_iterations,
        "eval_episodes": args.eval_episodes,
        "validation_episodes": args.validation_episodes,
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/quickstart", help="output folder (replaced)")
    parser.add_argument("--demos", type=int, default=15)
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--rl-iterations", type=int, default=40)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--validation-episodes", type=int, default=50)
    parser.add_argument("--validate-every", type=int, default=5, help="PPO iterations")
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--backend", default="sync", help="vector env backend (sync|subproc)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seeds demos, SFT and PPO")
    parser.add_argument(
        "--progress", default="auto", choices=["auto", "on", "off"], help="PPO progress bar"
    )
    add_env_kwargs_flag(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        help=f"dotted overrides of {CONFIG}, env kwargs too (env.kwargs.KEY=VALUE)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line (``argv``: its arguments, default ``sys.argv[1:]``); the summary goes to
    ``result.json`` under ``--out``. Returns the exit status."""
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
