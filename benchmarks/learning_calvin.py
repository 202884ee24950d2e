"""Learning benchmark on CALVIN: expert demos, SFT of the flow VLA, RL, the official evaluation.

Per training seed, with the trainer config ``calvin_d_<algorithm>_flow_cpu`` (``--split D``) or
``calvin_abc_<algorithm>_flow_cpu`` (``--split ABC``: demos and RL in scenes A, B, C; evaluation
in D), ``--algorithm`` ``ppo`` or ``grpo``:

1. collect ``--demos`` scripted-expert episodes through the vector layer, single subtasks
   (``--demo-subtasks 1``) or chains, from the evaluation's start states: each reset draws one
   of the evaluation's symbolic initial states and a subtask valid in it by the official
   preconditions. With ``--chain-demos N`` (and ``--start-chains``), N more single subtasks
   start where the subtasks of recorded expert chains began (see 4.), so that the demos cover
   every position of a chain. The expert's own success rate is recorded; SFT uses its
   successful episodes;
2. SFT (flow matching; static + gripper cameras, MiniLM instruction, action chunks);
3. the official long-horizon protocol (``vla_gym.eval.calvin``) on the first ``--chains`` of the
   1000 chains, always in scene D: 1/5..5/5, avg. len and per-task success;
4. RL with flow_sde from the SFT weights on the config's episodes (single subtasks drawn as in
   1.; GRPO: in groups of envs sharing a start state and subtask) for
   ``--rl-iterations`` or ``--rl-minutes`` of training time, whichever ends first; a
   checkpoint after every iteration. With ``--start-chains N``, RL episodes start instead
   from where each subtask of N scripted-expert chains (in the RL scenes, no rendering) began,
   so that they cover the later subtasks of a chain as the evaluation does;
5. the same evaluation of the RL policy.

Every stage records its wall and CPU seconds in ``<work>/seed<N>/state.json``; a finished stage
is skipped when the command is run again, and a killed RL stage resumes from its last
checkpoint (the time cap counts the time of every launch). Once every seed has finished, the
per-seed avg. len before and after RL, 1/5..5/5 and per-task success go to
``benchmarks/results/learning_calvin_<split>.json``; ``--report-only`` prints the tables and
writes the result from disk. Per-unit timings and the defaults: see
``benchmarks/notes/2026-12-03-calvin-learning-plan.md``.

    nice -n 10 python benchmarks/learning_calvin.py --seeds 0 1 --split D --algorithm grpo
    nice -n 10 python benchmarks/learning_calvin.py --seeds 0 1 --split ABC --algorithm grpo
"""

from __future__ import annotations

import argparse
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
from _results import RESULTS_DIR, write_result  # noqa: E402
from _state import save_state  # noqa: E402

ALGORITHMS = ("ppo", "grpo")
CONFIGS = {
    (split, algorithm): f"calvin_{split.lower()}_{algorithm}_flow_cpu"
    for split in ("D", "ABC")
    for algorithm in ALGORITHMS
}
CHAIN_LENGTH = 5
STARTS_SEED = 5000  # start-state chains use env seeds apart from the demos' (N * 10000 on)
PROBE_SEED = 20_000_003  # probe episodes: seeds apart from RL's


class Clock:
    """Wall and CPU seconds since creation (CPU: this process; every env runs in it)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> dict[str, float]:
        return {
            "seconds": time.perf_counter() - self.wall,
            "cpu_seconds": time.process_time() - self.cpu,
        }


def train_config(args: argparse.Namespace, work: Path, extra: tuple[str, ...] = ()):
    from trainers.config import load_config

    overrides = [
        f"runner.log_dir={work}",
        "runner.progress_bar='off'",
        f"runner.torch_threads={args.torch_threads}",
        f"runner.seed={args.seed}",
        f"algorithm.sft_demos={work / 'demos'}",  # cloned in RL if the recipe sets sft_coef
        *args.overrides,
        *extra,
    ]
    return load_config(CONFIGS[args.split, args.algorithm], overrides)


def stage_collect(
    args: argparse.Namespace, work: Path, state: dict[str, Any], starts: Path | None
) -> Path:
    """``--demos`` expert episodes from the evaluation's start states, then ``--chain-demos``
    single subtasks from the recorded chain starts (every position of a chain) into one folder."""
    from trainers.collect import collect
    from trainers.demos import read_index
    from vla_gym.envs.calvin.assets import resolve_mode

    out = work / "demos"
    if "collect" in state:
        return out
    clock = Clock()
    env = train_config(args, work).env
    # the expert's horizon is the env's own (360 steps per subtask), not RL's shorter one
    kwargs = {**env.kwargs, "obs_mode": env.obs_mode, "num_subtasks": args.demo_subtasks}
    kwargs.pop("steps_per_subtask", None)
    parts = [(args.demos, kwargs)]
    if args.chain_demos:
        parts.append((args.chain_demos, {**kwargs, "num_subtasks": 1, "start_states": str(starts)}))
    total = 0
    for episodes, env_kwargs in parts:
        total += episodes
        collect(  # continues the folder: a later part starts from fresh episode seeds
            env.id,
            total,
            str(out),
            num_envs=args.collect_envs,
            backend=args.collect_backend,
            seed=stages.DEMO_SEED_STRIDE * args.seed,
            only_success=False,  # failures are kept (and skipped by SFT): the expert's rate
            action_noise=args.action_noise,
            env_kwargs=env_kwargs,
            verbose=False,
            progress="off",
        )
    records = read_index(out)
    assets, _ = resolve_mode(kwargs.get("assets", "auto"), kwargs.get("calvin_root"))
    state["collect"] = {
        "assets": assets,  # builtin or official: the result says which
        "episodes": len(records),
        "subtasks": args.demo_subtasks,
        "chain_demos": args.chain_demos,
        "expert_success": float(np.mean([r["success"] for r in records])),
        "steps": int(sum(r["length"] for r in records)),
        **clock.seconds(),
    }
    if args.chain_demos:
        chain_starts = [r["success"] for r in records[args.demos :]]
        state["collect"]["expert_success_chain_starts"] = float(np.mean(chain_starts))
    return out


def stage_sft(args: argparse.Namespace, work: Path, state: dict[str, Any], demos: Path) -> Path:
    from trainers.demos import DemoDataset

    path = work / "sft" / "latest.pt"
    if "sft" in state:
        return path
    clock = Clock()
    config = train_config(args, work)
    policy, action_space = stages.make_config_policy(config, seed=args.seed)
    dataset = DemoDataset(demos)
    sft = stages.sft_config(
        args.sft_steps,
        batch_size=args.sft_batch,
        lr=1e-3,
        warmup_steps=min(50, args.sft_steps // 10),
        image_shift=args.image_shift,
        seed=args.seed,
    )
    history = stages.train_sft_resuming(
        policy,
        dataset,
        sft,
        action_space,
        path,
        run_config=config.to_dict(),  # so `python -m trainers eval` needs no --config
    )
    state["sft"] = {
        "steps": args.sft_steps,
        "batch": args.sft_batch,
        "episodes": len(dataset),
        "samples": dataset.num_samples,
        "curve": [[h["step"], h["sft/loss"]] for h in history if "sft/loss" in h],
        **clock.seconds(),
    }
    return path


def evaluate_chains(args: argparse.Namespace, work: Path, checkpoint: Path) -> dict[str, Any]:
    """The official protocol on the first ``--chains`` chains (scene D) for a checkpoint."""
    from trainers.evaluate import evaluate_checkpoint

    clock = Clock()
    config = train_config(args, work, (f"env.eval_num_envs={args.eval_envs}",))
    result = evaluate_checkpoint(checkpoint, config, episodes=args.chains, progress=False)
    print(result.report, flush=True)
    return {
        **result.metrics,  # avg_len, chain_success_1..5
        "chains": result.episodes,
        "env_steps": result.env_steps,
        "task_counts": result.details["task_counts"],
        **clock.seconds(),
    }


def stage_starts(args: argparse.Namespace, work: Path, state: dict[str, Any]) -> Path | None:
    """With ``--start-chains N``: where each subtask of N expert chains in the RL scenes began
    (``vla_gym.envs.calvin.start_states``), for RL episodes spread over the chain positions."""
    from vla_gym.envs.calvin.start_states import record_chain_starts, save_start_states

    if not args.start_chains:
        return None
    path = work / "start_states.npz"
    if "starts" in state:
        return path
    clock = Clock()
    env = train_config(args, work).env
    kwargs = {k: v for k, v in env.kwargs.items() if k in ("assets", "calvin_root")}
    starts = record_chain_starts(
        env.id, args.start_chains, seed=stages.DEMO_SEED_STRIDE * args.seed + STARTS_SEED, **kwargs
    )
    save_start_states(path, starts)
    state["starts"] = {
        "chains": args.start_chains,
        "states": len(starts),
        "per_position": np.bincount(starts.position, minlength=CHAIN_LENGTH).tolist(),
        **clock.seconds(),
    }
    return path


@torch.no_grad()
def probe_task_counts(config: Any, checkpoint_path: Path, episodes: int) -> dict[str, list[int]]:
    """[successes, episodes] per task of a checkpoint's sampled (RL) actions on ``episodes`` of
    RL's own episodes (``config.env``), each env's first episode per round."""
    from trainers import checkpoint
    from trainers.config import env_kwargs, vector_options
    from trainers.evaluate import load_policy
    from trainers.rollout import make_vector_env, obs_to_torch

    env = config.env
    kwargs = {**env_kwargs(env), **vector_options(env)}
    envs = make_vector_env(
        env.id, env.num_envs, kwargs, backend=env.backend, envs_per_worker=env.envs_per_worker
    )
    state = checkpoint.load(checkpoint_path, "cpu")
    spaces = (envs.single_observation_space, envs.single_action_space)
    policy = load_policy(state, *spaces, torch.device("cpu"), state["config"]["policy"])
    policy.eval()
    counts: dict[str, list[int]] = {}
    try:
        for round_index in range(-(-episodes // env.num_envs)):
            seed = PROBE_SEED + round_index * env.num_envs
            obs, info = envs.reset(seed=[seed + i for i in range(env.num_envs)])
            tasks = [str(t) for t in info["task"]]
            solved = np.zeros(env.num_envs, dtype=bool)
            done = np.zeros(env.num_envs, dtype=bool)
            while not done.all():
                actions = policy.act(obs_to_torch(obs, torch.device("cpu"))).actions
                obs, _, terminated, truncated, info = envs.step(actions.numpy())
                ending = (terminated | truncated) & ~done  # later episodes are not counted
                solved |= ending & (np.asarray(info["subtasks_solved"]) > 0)
                done |= ending
            for task, success in zip(tasks, solved, strict=True):
                entry = counts.setdefault(task, [0, 0])
                entry[0], entry[1] = entry[0] + int(success), entry[1] + 1
    finally:
        envs.close()
    return counts


def task_weights(counts: dict[str, list[int]], tasks: set[str]) -> dict[str, float]:
    """p (1 - p) per task, p = (successes + 1) / (episodes + 2): largest where a GRPO group of
    the task is least likely to be all successes or all failures; unprobed tasks get p = 0.5."""
    weights = {}
    for task in tasks:
        success, total = counts.get(task, (0, 0))
        p = (success + 1) / (total + 2)
        weights[task] = p * (1 - p)
    return weights


def stage_probe(
    args: argparse.Namespace, work: Path, state: dict[str, Any], sft_path: Path, starts: Path
) -> Path:
    """With ``--probe-episodes N``: the SFT policy's success per task on N RL episodes, and a
    copy of the start states drawn by ``task_weights`` for RL."""
    from vla_gym.envs.calvin.start_states import load_start_states, save_start_states

    path = work / "start_states_weighted.npz"
    if "probe" in state:
        return path
    clock = Clock()
    config = train_config(args, work, (f"env.kwargs.start_states={starts}",))
    counts = probe_task_counts(config, sft_path, args.probe_episodes)
    recorded = load_start_states(starts)
    weights = task_weights(counts, set(recorded.starting_tasks().tolist()))
    save_start_states(path, recorded.weighted_by_task(weights))
    episodes = sum(total for _, total in counts.values())  # whole rounds of the envs
    state["probe"] = {"episodes": episodes, "task_counts": counts, **clock.seconds()}
    return path


def stage_rl(
    args: argparse.Namespace,
    work: Path,
    state: dict[str, Any],
    sft_path: Path,
    starts: Path | None,
) -> None:
    overrides = (
        *stages.rl_overrides(sft_path, args.rl_iterations, "rl"),
        "runner.video_interval=0",
    )
    if starts is not None:  # RL episodes only: the evaluation keeps the official start states
        overrides += (f"env.kwargs.start_states={starts}", "env.eval_kwargs.start_states=null")
    config = train_config(args, work, overrides)
    with stages.rl_trainer(config) as trainer:  # continues from a checkpoint if any
        clock = Clock()
        curve = state.setdefault("rl_curve", [])
        cpu_before = state.get("rl_cpu_seconds", 0.0)  # earlier launches of a resumed run
        del curve[trainer.iteration :]  # points past the checkpoint a killed run resumes from
        for metrics in stages.timed_iterations(trainer, args.rl_iterations, args.rl_minutes):
            trainer.save()
            curve.append(
                {
                    "iteration": trainer.iteration,
                    "env_steps": trainer.env_steps,
                    "minutes": trainer.elapsed / 60,
                    # subtasks solved per finished training episode (NaN: none finished)
                    "avg_len": metrics.get("env/avg_len", float("nan")),
                    "iteration_seconds": metrics["time/iteration"],
                }
            )
            state["rl_cpu_seconds"] = cpu_before + clock.seconds()["cpu_seconds"]
            save_state(work / "state.json", state)
            print(
                f"  rl iter {trainer.iteration}: train avg. len {curve[-1]['avg_len']:.2f}, "
                f"{metrics['time/iteration']:.1f} s",
                flush=True,
            )
        state["rl"] = {
            "iterations": trainer.iteration,
            "env_steps": trainer.env_steps,
            "minutes": trainer.elapsed / 60,
            "cpu_seconds": state.pop("rl_cpu_seconds", 0.0),
            "checkpoint": str(trainer.latest_path),
        }


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage of one training seed (``args.seed``), skipping those already finished."""
    work, state_path, state = stages.open_seed(args)
    if args.report_only:
        return state
    torch.manual_seed(args.seed)
    starts = stage_starts(args, work, state)  # first: --chain-demos start from them
    save_state(state_path, state)
    print("collecting demonstrations ...", flush=True)
    demos = stage_collect(args, work, state, starts)
    save_state(state_path, state)
    print(f"expert success {state['collect']['expert_success']:.0%}; SFT ...", flush=True)
    sft_path = stage_sft(args, work, state, demos)
    save_state(state_path, state)
    if "sft_eval" not in state:
        print(f"evaluating the SFT policy on {args.chains} chains ...", flush=True)
        state["sft_eval"] = evaluate_chains(args, work, sft_path)
        save_state(state_path, state)
    if args.probe_episodes:
        print(f"probing the SFT policy on {args.probe_episodes} RL episodes ...", flush=True)
        starts = stage_probe(args, work, state, sft_path, starts)
        save_state(state_path, state)
    if "rl" not in state:
        print("RL ...", flush=True)
        stage_rl(args, work, state, sft_path, starts)
        save_state(state_path, state)
    if "rl_eval" not in state:
        print(f"evaluating the RL policy on {args.chains} chains ...", flush=True)
        state["rl_eval"] = evaluate_chains(args, work, Path(state["rl"]["checkpoint"]))
        save_state(state_path, state)
    return state


# ---------------------------------------------------------------------------------- report
def rates(evaluation: dict[str, Any]) -> str:
    cells = [f"{100 * evaluation[f'chain_success_{i}']:.1f}%" for i in range(1, 6)]
    return " | ".join(cells) + f" | {evaluation['avg_len']:.2f}"


def report(seed: int, state: dict[str, Any]) -> None:
    print(f"\nseed {seed}")
    if "collect" in state:
        collected = state["collect"]
        print(
            f"expert: {collected['expert_success']:.0%} of {collected['episodes']} episodes "
            f"({collected['subtasks']} subtask(s) each)"
        )
    print("| policy | 1/5 | 2/5 | 3/5 | 4/5 | 5/5 | avg. len |\n|---|---|---|---|---|---|---|")
    if "sft_eval" in state:
        print(f"| SFT | {rates(state['sft_eval'])} |")
    if "rl_eval" in state:
        rl = state["rl"]
        print(
            f"| + RL ({rl['iterations']} it., {rl['minutes']:.0f} min) "
            f"| {rates(state['rl_eval'])} |"
        )


def task_rows(states: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: successes / attempts over every seed's chains, after SFT and after RL."""
    rows = []
    tasks = sorted(
        {
            t
            for s in states.values()
            for key in ("sft_eval", "rl_eval")
            for t in s[key]["task_counts"]
        }
    )
    for task in tasks:
        row: dict[str, Any] = {"task": task}
        for key, label in (("sft_eval", "SFT"), ("rl_eval", "RL")):
            counts = [
                s[key]["task_counts"].get(task, {"success": 0, "total": 0}) for s in states.values()
            ]
            success, total = sum(c["success"] for c in counts), sum(c["total"] for c in counts)
            row[f"{label} success / attempts"] = f"{success} / {total}"
        rows.append(row)
    return rows


def write_json(args: argparse.Namespace, states: dict[int, dict[str, Any]]) -> Path | None:
    """The result file, once every seed has both evaluations."""
    if not stages.all_finished(states):
        return None
    per_seed = {}
    for seed, state in states.items():
        sft, rl = state["sft_eval"], state["rl_eval"]
        values = {
            "expert success (%)": 100 * state["collect"]["expert_success"],
            "SFT avg. len": sft["avg_len"],
            "RL avg. len": rl["avg_len"],
            "gain": rl["avg_len"] - sft["avg_len"],
        }
        for label, evaluation in (("SFT", sft), ("RL", rl)):
            for i in range(1, CHAIN_LENGTH + 1):
                values[f"{label} {i}/5 (%)"] = 100 * evaluation[f"chain_success_{i}"]
        values["RL iterations"] = state["rl"]["iterations"]
        values["RL minutes"] = state["rl"]["minutes"]
        per_seed[seed] = values
    first = next(iter(states.values()))
    config = train_config(stages.seed_args(args, 0), Path(args.work))
    sft_mean = stages.mean_of(per_seed, "SFT avg. len")
    rl_mean = stages.mean_of(per_seed, "RL avg. len")
    chains = first["rl_eval"]["chains"]
    collected, trained = first["collect"], first["sft"]
    scenes = "scene D" if args.split == "D" else "scenes A, B, C"
    sft_coef = config.algorithm.sft_coef
    cloning = (
        f", cloning the SFT demonstrations in every update (sft_coef {sft_coef:g}),"
        if sft_coef
        else ""
    )
    return write_result(
        f"learning_calvin_{args.split.lower()}",
        title=f"CALVIN {args.split}->D: flow VLA, SFT on expert demos then RL ({config.env.id})",
        claim=(
            f"{config.algorithm.name.upper()} ({config.policy.get('noise_method')}) in {scenes}"
            f"{cloning} takes the official protocol's avg. len on the first {chains} chains in "
            f"scene D from {sft_mean:.2f} after SFT to {rl_mean:.2f} (mean over {len(states)} "
            f"training seeds, config `{CONFIGS[args.split, args.algorithm]}`, "
            f"{collected['assets']} assets"
            + (
                f"; RL episodes start where the subtasks of {first['starts']['chains']} expert "
                "chains began)."
                if "starts" in first
                else ")."
            )
        ),
        metric="gain",
        unit="avg. len",
        per_seed=per_seed,
        rows=task_rows(states),
        starts_from=(  # from the state: --report-only may run with other arguments
            f"one SFT checkpoint per training seed N: {collected['episodes']} scripted-expert "
            f"episodes of {collected['subtasks']} subtask(s) in {scenes} from env seeds N * "
            f"{stages.DEMO_SEED_STRIDE} on"
            + (
                f" ({collected['chain_demos']} of them from the recorded chain starts)"
                if collected.get("chain_demos")
                else ""
            )
            + f" (successful ones kept), {trained['steps']} SFT steps of "
            f"batch {trained['batch']} with seed N"
        ),
        env_steps=int(sum(s["rl"]["env_steps"] for s in states.values())),
        wall_seconds=sum(
            s[key]["seconds"]
            for s in states.values()
            for key in ("collect", "sft", "sft_eval", "rl_eval")
        )
        + 60 * sum(s["rl"]["minutes"] for s in states.values()),
        directory=Path(args.results_dir),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--split", choices=("D", "ABC"), default="D")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="ppo")
    parser.add_argument(
        "--work", default="", help="default: runs/learning_calvin_<split>_<algorithm>"
    )
    parser.add_argument("--demos", type=int, default=1000, help="expert episodes per seed")
    parser.add_argument("--demo-subtasks", type=int, default=1, choices=range(1, 6))
    parser.add_argument(
        "--chain-demos",
        type=int,
        default=0,
        help="N more single-subtask expert demos from the recorded chain starts (--start-chains)",
    )
    parser.add_argument("--collect-envs", type=int, default=4)
    parser.add_argument("--collect-backend", choices=("sync", "subproc"), default="sync")
    parser.add_argument("--action-noise", type=float, default=0.0, help="DART noise (demos)")
    parser.add_argument("--sft-steps", type=int, default=15000)
    parser.add_argument("--sft-batch", type=int, default=64)
    parser.add_argument("--image-shift", type=int, default=4, help="SFT random-shift pixels")
    parser.add_argument(
        "--chains", type=int, default=0, help="official chains per evaluation (0: the config's)"
    )
    parser.add_argument("--eval-envs", type=int, default=4)
    parser.add_argument(
        "--rl-iterations", type=int, default=0, help="0: the config's runner.max_iterations"
    )
    parser.add_argument("--rl-minutes", type=float, default=90.0)
    parser.add_argument(
        "--start-chains",
        type=int,
        default=0,
        help="0: RL resets from the evaluation's start states; N: from where each subtask of N "
        "expert chains began",
    )
    parser.add_argument(
        "--probe-episodes",
        type=int,
        default=0,
        help="N > 0: RL draws the chain starts by p (1 - p) of the SFT policy's success p on "
        "their task, measured on N RL episodes (needs --start-chains)",
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. env.num_envs=8")
    args = parser.parse_intermixed_args(argv)  # overrides may come between options
    args.work = args.work or f"runs/learning_calvin_{args.split.lower()}_{args.algorithm}"
    config = train_config(stages.seed_args(args, 0), Path(args.work))
    args.chains = args.chains or config.env.eval_episodes  # the recipe holds the run's sizes
    args.rl_iterations = args.rl_iterations or config.runner.max_iterations
    for option in ("chain_demos", "probe_episodes"):
        if getattr(args, option) and not args.start_chains:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} needs --start-chains (the recorded chain starts it uses)")
    return args


def main(argv: list[str] | None = None) -> dict[int, dict[str, Any]]:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    states = stages.run_seeds(args, run_seed)
    for seed, state in states.items():
        report(seed, state)
    write_json(args, states)
    return states


if __name__ == "__main__":
    main()
