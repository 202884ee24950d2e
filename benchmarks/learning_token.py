"""Learning benchmark: action-token VLA (OpenVLA-OFT style), SFT from expert demos, then PPO.

On ``VLA/PandaPickCubeVision-v0`` (front + wrist images at 64 px, chunks of 5 actions = 20 tokens
of 256 bins decoded in one pass) with the trainer config ``token_panda_vision_ppo_cpu``:

1. collect ``--demos`` successful scripted-expert episodes (``trainers.collect``), or reuse a
   dataset with ``--demos-dir`` (e.g. the flow benchmark's: same env and image size);
2. SFT (cross-entropy on tokens) for ``--sft-steps`` steps, after ``train_sft`` fits the
   action-token statistics (q01/q99 per dimension) and the state statistics on the demos;
3. evaluate the SFT policy (greedy tokens) on held-out seeds;
4. PPO (token-level ratios, sampling at temperature 1.0 / top-k 50) from the SFT weights for
   ``--rl-iterations`` iterations or ``--rl-minutes`` of training time (summed over resumed
   launches);
5. evaluate the PPO policy on the same held-out seeds.

It also times ``act()`` on one batch with parallel (OFT) vs autoregressive decoding of the same
network size, interleaved in one run.

``--seeds 0 1 2`` runs the whole pipeline once per training seed, each in ``<work>/seed<N>``. The
seed varies every stage: the demos are collected from env seeds ``N * 10000`` onwards (unless
``--demos-dir`` gives one dataset to all seeds), SFT initialises and shuffles with it, and RL runs
with ``runner.seed=N``. Evaluation always uses the same held-out seeds (700000+). Every stage
checkpoints into the seed's folder; re-running the same command resumes where it stopped (at
most one RL iteration is lost). When every seed has finished, the per-seed SFT and PPO success,
their mean and sample standard deviation are written to ``benchmarks/results/<name>.json`` (see
``benchmarks/_results.py``). ``--report-only`` prints the tables and writes the result from disk.

    nice -n 10 python benchmarks/learning_token.py --work runs/learning_token --seeds 0 1 2
    nice -n 10 python benchmarks/learning_token.py --work runs/learning_token_grid4 \
        --demos-dir runs/learning_token/seed0/demos policy.encoder.image_grid=4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _learning_stages as stages  # noqa: E402  (benchmarks/ is on sys.path now)
from _state import save_state  # noqa: E402

CONFIG = "token_panda_vision_ppo_cpu"
ENV_ID = "VLA/PandaPickCubeVision-v0"


def train_config(args: argparse.Namespace, work: Path, extra: tuple[str, ...] = ()):
    from trainers.config import load_config

    overrides = [
        f"env.num_envs={args.num_envs}",
        f"env.eval_num_envs={args.num_envs}",
        f"env.eval_episodes={args.eval_episodes}",
        f"env.backend={args.backend}",
        f"runner.log_dir={work}",
        'runner.progress_bar="off"',  # quoted: YAML reads a bare off as False
        f"runner.torch_threads={args.torch_threads}",
        f"runner.seed={args.seed}",
        *args.overrides,
        *extra,
    ]
    return load_config(CONFIG, overrides)


# -------------------------------------------------------------------------------- stages
def stage_demos(args: argparse.Namespace, work: Path) -> Path:
    if args.demos_dir:
        return Path(args.demos_dir)
    env = train_config(args, work).env  # the RL env's kwargs (e.g. terminate_on_success)
    return stages.collect_seed_demos(args, env, work / "demos", num_envs=min(args.demos, 4))


def stage_sft(args: argparse.Namespace, work: Path, state: dict[str, Any], demos: Path) -> Path:
    from trainers.demos import DemoDataset

    config = train_config(args, work)
    path = work / "sft" / "latest.pt"
    policy, action_space = stages.make_config_policy(config, seed=args.seed)
    dataset = DemoDataset(demos)  # train_sft fits the token bins and state statistics on it
    # batch size, lr and schedule: those of `python -m trainers sft`
    sft = stages.sft_config(args.sft_steps, image_shift=args.image_shift, seed=args.seed)
    history = stages.train_sft_resuming(policy, dataset, sft, action_space, path)
    state["sft_curve"] = stages.sft_curve(history)
    state["sft_demos"] = {"episodes": len(dataset), "steps": dataset.num_samples}
    if "sft_eval" not in state:
        state["sft_eval"] = stages.evaluate(config, policy.eval(), args.eval_episodes)
    return path


def stage_rl(args: argparse.Namespace, work: Path, state: dict[str, Any], sft_path: Path) -> None:
    config = train_config(args, work, stages.rl_overrides(sft_path, args.rl_iterations, "rl_ppo"))
    with stages.rl_trainer(config) as trainer:
        curve = state.setdefault("rl_curve", [])
        for metrics in stages.timed_iterations(trainer, args.rl_iterations, args.rl_minutes):
            point = {
                "iteration": trainer.iteration,
                "env_steps": trainer.env_steps,
                "wall_minutes": trainer.elapsed / 60,
                "success": metrics.get("env/success_once", float("nan")),
                "return": metrics.get("env/return", float("nan")),
                "approx_kl": metrics.get("actor/approx_kl", float("nan")),
                "clipfrac": metrics.get("actor/pg_clipfrac", float("nan")),
                "entropy": metrics.get("actor/entropy", float("nan")),
            }
            curve.append(point)
            trainer.save()
            save_state(work / "state.json", state)
            print(
                f"  rl iter {trainer.iteration}: rollout success {point['success']:.2f}, "
                f"return {point['return']:.2f}, kl {point['approx_kl']:.4f}, "
                f"token entropy {point['entropy']:.3f}",
                flush=True,
            )
        trainer.collector.close()  # its env processes and the evaluation's would not both fit
        state["rl_eval"] = stages.evaluate(
            config, trainer.rollout_policy.eval(), args.eval_episodes
        )
        state["rl_eval"].update(
            iterations=trainer.iteration,
            env_steps=trainer.env_steps,
            train_minutes=trainer.elapsed / 60,
        )


def stage_decoding_speed(args: argparse.Namespace, work: Path, demos: Path) -> dict[str, float]:
    """Median wall time of act() on 8 demo observations: parallel vs autoregressive decoding."""
    from trainers.demos import DemoDataset

    config = train_config(args, work)
    obs, _ = next(DemoDataset(demos).batches(8, config.env.action_chunk, shuffle_buffer=64))
    policies = {
        decoding: stages.make_config_policy(config, decoding=decoding)[0].eval()
        for decoding in ("parallel", "autoregressive")
    }
    times: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(args.speed_repeats):  # interleaved, so load changes hit both alike
        for name, policy in policies.items():
            start = time.perf_counter()
            policy.act(obs)
            times[name].append(time.perf_counter() - start)
    parallel, autoregressive = (statistics.median(times[n]) for n in policies)
    return {
        "parallel_ms": 1000 * parallel,
        "autoregressive_ms": 1000 * autoregressive,
        "ratio": autoregressive / parallel,
        "tokens": config.env.action_chunk * 4,
    }


# -------------------------------------------------------------------------------- report
def report(state: dict[str, Any]) -> None:
    sft, rl = state.get("sft_eval"), state.get("rl_eval")
    demos = state.get("sft_demos", {})
    print(f"\nmachine: {state.get('machine', '?')}")
    print("\n| stage | success (held-out seeds) | mean return | episodes |")
    print("|---|---|---|---|")
    if sft:
        print(
            f"| SFT, token cross-entropy ({demos.get('episodes', '?')} demos, "
            f"{demos.get('steps', '?')} steps, {state.get('sft_steps', '?')} updates) "
            f"| {sft['success']:.0%} | {sft['return']:.2f} | {sft['episodes']} |"
        )
    if rl:
        print(
            f"| + PPO, token-level ratios ({rl['iterations']} it., {rl['env_steps']} env steps, "
            f"{rl['train_minutes']:.0f} min) | {rl['success']:.0%} | {rl['return']:.2f} "
            f"| {rl['episodes']} |"
        )
    if sft and rl:
        print(f"\nchange: {100 * (rl['success'] - sft['success']):+.0f} points")
    curve = state.get("rl_curve", [])
    if len(curve) >= 2:
        window = max(1, min(10, len(curve) // 2))
        first, last = curve[:window], curve[-window:]
        print(
            f"PPO rollouts (the config's temperature and top-k), mean of the first vs last "
            f"{window} iterations: success {np.mean([p['success'] for p in first]):.3f} -> "
            f"{np.mean([p['success'] for p in last]):.3f}, return "
            f"{np.mean([p['return'] for p in first]):.2f} -> "
            f"{np.mean([p['return'] for p in last]):.2f}"
        )
    speed = state.get("decoding_speed")
    if speed:
        print(
            f"act() on 8 obs, {speed['tokens']} tokens: parallel {speed['parallel_ms']:.1f} ms, "
            f"autoregressive {speed['autoregressive_ms']:.1f} ms ({speed['ratio']:.1f}x)"
        )


def main(argv: list[str] | None = None) -> dict[int, dict[str, Any]]:
    from _results import RESULTS_DIR

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--work", default="runs/learning_token")
    stages.add_demo_sft_arguments(parser)
    parser.add_argument("--rl-iterations", type=int, default=40)
    parser.add_argument("--rl-minutes", type=float, default=60.0)
    parser.add_argument("--eval-episodes", type=int, default=24)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--backend", default="subproc")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--speed-repeats", type=int, default=20)
    stages.add_seeds_argument(parser)
    parser.add_argument("--name", default="learning_token_panda_vision_ppo", help="result stem")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "overrides", nargs="*", help="dotted config overrides, e.g. policy.encoder.image_grid=4"
    )
    args = parser.parse_args(argv)
    if not args.report_only:
        torch.set_num_threads(args.torch_threads)
    states = stages.run_seeds(args, run_seed)
    write_json(args, states)
    return states


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """Demos, SFT, decoding speed and RL of one training seed (``args.seed``), resuming."""
    work, state_path, state = stages.open_seed(args)
    if not args.report_only:
        from _machine import describe_machine

        state.setdefault("machine", describe_machine())
        start = time.perf_counter()
        print("demonstrations ...", flush=True)
        demos = stage_demos(args, work)
        print(f"SFT ... ({time.perf_counter() - start:.0f} s)", flush=True)
        state["sft_steps"] = args.sft_steps
        sft_path = stage_sft(args, work, state, demos)
        save_state(state_path, state)
        print(f"SFT success {state['sft_eval']['success']:.0%}", flush=True)
        if "decoding_speed" not in state:
            state["decoding_speed"] = stage_decoding_speed(args, work, demos)
            save_state(state_path, state)
        print(f"RL ... ({time.perf_counter() - start:.0f} s)", flush=True)
        if stages.rl_to_continue(state.get("rl_eval"), args.rl_iterations, args.rl_minutes):
            state.pop("rl_eval", None)
            stage_rl(args, work, state, sft_path)
        # wall time over all launches of this seed (demos, SFT, evaluations and RL)
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + time.perf_counter() - start
        save_state(state_path, state)
    report(state)
    return state


def write_json(args: argparse.Namespace, states: dict[int, dict[str, Any]]) -> None:
    """The result file, once every seed has its SFT and final PPO evaluation."""
    from _results import write_result

    if not stages.all_finished(states):
        return
    per_seed = {}
    for seed, state in states.items():
        sft, rl = state["sft_eval"]["success"], state["rl_eval"]["success"]
        per_seed[seed] = {
            "SFT success (%)": 100 * sft,
            "PPO success (%)": 100 * rl,
            "gain": 100 * (rl - sft),
            "PPO iterations": state["rl_eval"]["iterations"],
        }
        if state.get("decoding_speed"):
            per_seed[seed]["act() autoregressive / parallel"] = state["decoding_speed"]["ratio"]
    first = next(iter(states.values()))
    sft_mean = stages.mean_of(per_seed, "SFT success (%)")
    rl_mean = stages.mean_of(per_seed, "PPO success (%)")
    source = stages.demos_source(args, first.get("sft_demos", {}))
    write_result(
        args.name,
        title=f"Action-token VLA: SFT then PPO on {ENV_ID}",
        claim=(
            f"PPO with token-level ratios takes held-out success (greedy tokens) from "
            f"{sft_mean:.1f} % after SFT to {rl_mean:.1f} % (mean over {len(states)} training "
            f"seeds, {first['rl_eval']['episodes']} held-out episodes each, config `{CONFIG}`)."
        ),
        metric="gain",
        unit="points",
        per_seed=per_seed,
        starts_from=(
            f"one SFT checkpoint per training seed N: {source}, {args.sft_steps} SFT steps "
            "with seed N"
        ),
        env_steps=int(sum(state["rl_eval"]["env_steps"] for state in states.values())),
        wall_seconds=sum(state.get("wall_seconds", 0.0) for state in states.values()),
        directory=Path(args.results_dir),
    )


if __name__ == "__main__":
    main()
