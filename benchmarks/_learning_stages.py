"""Pieces that the learning benchmarks' per-seed pipelines (demos, SFT, evaluation, RL,
result) have in common; each script keeps its own stages, state keys, report and result.

The ``trainers`` imports stay inside the functions, as in the scripts: the resumption tests
replace ``trainers.sft.train_sft`` or ``trainers.train.Trainer`` and must reach the call.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _state import load_state, save_state  # benchmarks/ is on sys.path in every script

DEMO_SEED_STRIDE = 10_000  # training seed N collects its demos from env seeds N * 10000 on
EVAL_SEED = 700_000  # held out: demos come from seeds N * 10000.., RL from the trainer's seeds

State = dict[str, Any]


# ---------------------------------------------------------------------------------- seeds
def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    """``--seeds`` (alias ``--seed``), the training seeds :func:`run_seeds` runs."""
    parser.add_argument(
        "--seeds",
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="training seeds, each run (and resumed) in <work>/seed<N>",
    )


def seed_args(args: argparse.Namespace, seed: int) -> argparse.Namespace:
    """``args`` with ``args.seed`` set: one training seed's arguments."""
    return argparse.Namespace(**{**vars(args), "seed": seed})


def run_seeds(
    args: argparse.Namespace, run_seed: Callable[[argparse.Namespace], State]
) -> dict[int, State]:
    """``run_seed`` for every ``--seeds`` entry, in order: the per-seed states.

    A finished seed (one with its final ``rl_eval``) is also kept in the results folder
    (:func:`archive_path`), which is committed with the results. A seed whose work folder holds
    no state but which was finished earlier with the same arguments is taken from there and
    not run again, so the seeds of one claim may run in separate launches, on other machines.
    """
    states = {}
    for seed in args.seeds:
        one = seed_args(args, seed)
        archived = None if seed_state_path(one).exists() else load_archived(one)
        if archived is not None:
            print(f"\n=== seed {seed}: finished earlier, from {archive_path(one)} ===", flush=True)
            states[seed] = archived
            continue
        print(f"\n=== seed {seed} ===", flush=True)
        states[seed] = run_seed(one)
        if is_finished(states[seed]):
            archive_seed(one, states[seed])
    return states


# Arguments that do not change what a seed computes.
_NOT_COMPARED = {"seed", "seeds", "work", "results_dir", "report_only"}


def archive_path(args: argparse.Namespace) -> Path:
    """``<results-dir>/raw/seeds/<work folder name>/seed<N>.json``."""
    return Path(args.results_dir) / "raw" / "seeds" / Path(args.work).name / f"seed{args.seed}.json"


def seed_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that define a seed's run, as JSON values."""
    compared = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_COMPARED}
    return json.loads(json.dumps(compared, default=str))


def archive_seed(args: argparse.Namespace, state: State) -> None:
    """Keep a finished seed; a kept record of the same run stays as it is (its commit and date
    are those of the launch that finished it, not of a later report)."""
    from _results import git_commit, utc_now

    path = archive_path(args)
    arguments = seed_arguments(args)
    if path.exists():
        kept = load_state(path)
        if kept["arguments"] == arguments and kept["state"] == state:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"arguments": arguments, "commit": git_commit(), "date": utc_now(), "state": state}
    save_state(path, record)


def load_archived(args: argparse.Namespace) -> State | None:
    """The kept state of this seed, or ``None`` (none kept, or kept from other arguments)."""
    path = archive_path(args)
    if not path.exists():
        return None
    record = load_state(path)
    current = seed_arguments(args)
    kept = record["arguments"]
    changed = sorted(k for k in current.keys() | kept.keys() if current.get(k) != kept.get(k))
    if changed:
        print(f"seed {args.seed}: {path} was run with other {', '.join(changed)}; running it")
        return None
    return record["state"]


def seed_state_path(args: argparse.Namespace) -> Path:
    """``<work>/seed<N>/state.json``."""
    return Path(args.work) / f"seed{args.seed}" / "state.json"


def open_seed(args: argparse.Namespace) -> tuple[Path, Path, State]:
    """The seed's folder ``<work>/seed<N>`` (created), its state file and the state saved
    there by an earlier launch (empty at first)."""
    state_path = seed_state_path(args)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    return state_path.parent, state_path, load_state(state_path)


# ---------------------------------------------------------------------------------- demos
def add_demo_sft_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo flags :func:`collect_seed_demos` and :func:`demos_source` read, then the SFT
    length and augmentation."""
    parser.add_argument("--demos", type=int, default=96)
    parser.add_argument(
        "--action-noise",
        type=float,
        default=0.1,
        help="DART noise on the expert's executed actions while collecting demos",
    )
    parser.add_argument(
        "--expert",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scripted-expert option while collecting demos, repeatable (e.g. max_speed=0.025)",
    )
    parser.add_argument(
        "--demos-dir", default="", help="reuse an existing demo dataset (for every seed)"
    )
    parser.add_argument("--sft-steps", type=int, default=1500)
    parser.add_argument(
        "--image-shift", type=int, default=4, help="SFT random-shift augmentation (pixels)"
    )


def expert_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--expert max_speed=0.025`` -> ``{"max_speed": 0.025}`` (values read as YAML)."""
    import yaml

    pairs = (item.split("=", 1) for item in args.expert)
    return {key: yaml.safe_load(value) for key, value in pairs}


def collect_successes(
    env: Any,
    out: Path,
    *,
    episodes: int,
    num_envs: int,
    seed: int,
    action_noise: float,
    expert: Mapping[str, Any],
) -> Path:
    """``episodes`` successful scripted-expert episodes of the config's ``env`` (its kwargs and
    observation mode) into ``out``; a partial dataset there is continued."""
    from trainers.collect import collect

    collect(
        env.id,
        episodes,
        str(out),
        num_envs=num_envs,
        seed=seed,
        only_success=True,
        action_noise=action_noise,
        env_kwargs={**env.kwargs, "obs_mode": env.obs_mode},
        expert_kwargs=dict(expert),
        verbose=False,
    )
    return out


def collect_seed_demos(args: argparse.Namespace, env: Any, out: Path, num_envs: int) -> Path:
    """:func:`collect_successes` with ``--demos``, ``--action-noise`` and ``--expert``, from env
    seeds ``N * DEMO_SEED_STRIDE`` on for training seed N."""
    return collect_successes(
        env,
        out,
        episodes=args.demos,
        num_envs=num_envs,
        seed=DEMO_SEED_STRIDE * args.seed,
        action_noise=args.action_noise,
        expert=expert_kwargs(args),
    )


def demos_source(args: argparse.Namespace, demos: Mapping[str, Any]) -> str:
    """Where a seed's SFT demos came from, for a result's ``starts_from`` (``demos``: the
    state's ``sft_demos``)."""
    if args.demos_dir:
        return f"the dataset {args.demos_dir} ({demos.get('episodes', '?')} episodes)"
    return (
        f"{args.demos} scripted-expert demos collected from env seeds N * "
        f"{DEMO_SEED_STRIDE} on (action noise {args.action_noise}"
        + "".join(f", {item}" for item in args.expert)
        + ")"
    )


# ------------------------------------------------------------------------------------ SFT
def make_config_policy(
    config: Any, seed: int | None = None, **policy_overrides: Any
) -> tuple[Any, Any]:
    """A new policy of ``config`` (``policy_overrides`` on its ``policy`` section) and its
    env's action space, read off a probe env; ``seed``: the torch seed of its initial weights."""
    from trainers.config import env_kwargs
    from trainers.policies import make_policy
    from trainers.rollout import make_single_env

    probe = make_single_env(config.env.id, **env_kwargs(config.env))
    try:
        if seed is not None:
            torch.manual_seed(seed)
        policy = make_policy(
            {**config.policy, **policy_overrides}, probe.observation_space, probe.action_space
        )
        return policy, probe.action_space
    finally:
        probe.close()


def sft_config(steps: int, **options: Any) -> Any:
    """An ``SFTConfig`` of ``steps`` updates as every benchmark runs SFT: no evaluation inside
    it, a checkpoint every 100 steps to resume from, the loss every 50; ``options``: the rest."""
    from trainers.sft import SFTConfig

    return SFTConfig(steps=steps, eval_interval=0, save_interval=100, log_interval=50, **options)


def log_sft(metrics: dict[str, float], step: int) -> None:
    print(f"  sft step {step}: loss {metrics.get('sft/loss', float('nan')):.4f}", flush=True)


def train_sft_resuming(
    policy: Any, dataset: Any, sft: Any, action_space: Any, path: Path, **kwargs: Any
) -> list[dict[str, float]]:
    """``train_sft`` checkpointing into ``path`` and resuming from it (a finished checkpoint
    trains no further), with the SFT loss printed; ``kwargs``: more ``train_sft`` options."""
    from trainers.sft import train_sft

    return train_sft(
        policy, dataset, sft, action_space, checkpoint_path=path, resume=True, log=log_sft, **kwargs
    )


def sft_curve(history: Sequence[Mapping[str, float]]) -> list[tuple[int, float]]:
    """(step, loss) of every logged SFT step."""
    return [(h["step"], h["sft/loss"]) for h in history if "sft/loss" in h]


# ----------------------------------------------------------------------------- evaluation
def evaluate(config: Any, policy: Any, episodes: int, seed: int = EVAL_SEED) -> dict[str, float]:
    """Success and mean return of ``policy`` over ``episodes`` episodes of the config's
    evaluation envs from env seed ``seed`` on, on the CPU."""
    from trainers.evaluate import evaluate_policy, make_eval_collector

    collector = make_eval_collector(config, torch.device("cpu"))
    try:
        start = time.perf_counter()
        stats = evaluate_policy(collector, policy, episodes, seed=seed)
        return {
            "success": float(np.mean(stats.success_once)),
            "return": float(np.mean(stats.returns)),
            "episodes": stats.count,
            "seconds": time.perf_counter() - start,
        }
    finally:
        collector.close()


# ------------------------------------------------------------------------------------- RL
def rl_overrides(sft_path: Path, iterations: int, run_name: str) -> tuple[str, ...]:
    """Config overrides of an RL stage: from the SFT weights, for ``iterations``, evaluated by
    the script rather than the trainer."""
    return (
        f"runner.init_checkpoint_path={sft_path}",
        f"runner.max_iterations={iterations}",
        f"runner.run_name={run_name}",
        "runner.eval_interval=0",
    )


@contextmanager
def rl_trainer(config: Any) -> Iterator[Any]:
    """A ``Trainer`` of ``config`` resumed from its latest checkpoint if any; its envs and
    logger are closed on the way out, also when the stage fails."""
    from trainers.train import Trainer

    trainer = Trainer(config, resume_if_present=True)
    try:
        yield trainer
    finally:
        trainer.collector.close()
        trainer.logger.close()


def timed_iterations(trainer: Any, iterations: int, minutes: float) -> Iterator[dict[str, float]]:
    """The metrics of each (logged) RL iteration until the trainer reaches ``iterations`` or one
    more iteration of its average length would take its training time past ``minutes``
    (``--rl-minutes``). ``trainer.elapsed`` is restored from the checkpoint, so the cap counts
    the training time of every launch of a resumed run (evaluations in between excluded)."""
    while trainer.iteration < iterations:
        if not room_for_one_more(trainer.elapsed, trainer.iteration, 60 * minutes):
            print(f"  RL stopped by --rl-minutes after iteration {trainer.iteration}")
            return
        metrics = trainer.train_iteration()
        trainer.logger.log(metrics, trainer.env_steps)
        yield metrics


def rl_to_continue(rl_eval: Mapping[str, Any] | None, iterations: int, minutes: float) -> bool:
    """RL has not run yet, or a larger budget (``--rl-iterations``, ``--rl-minutes``) than the
    finished run's leaves room for more iterations (by the rule of :func:`timed_iterations`)."""
    if rl_eval is None:
        return True
    done = rl_eval["iterations"]
    return done < iterations and room_for_one_more(rl_eval["train_minutes"], done, minutes)


def room_for_one_more(trained: float, done: int, budget: float) -> bool:
    """One more iteration of the average length so far (``trained`` over ``done``) still ends
    within ``budget`` (same unit as ``trained``): the RL time cap's rule."""
    average = trained / done if done else 0.0
    return trained + average <= budget


# --------------------------------------------------------------------------------- result
def is_finished(state: State) -> bool:
    """A seed is finished once it has its final RL evaluation."""
    return "rl_eval" in state


def all_finished(states: Mapping[int, State]) -> bool:
    """Every seed is finished (:func:`is_finished`); else says which have not."""
    unfinished = [seed for seed, state in states.items() if not is_finished(state)]
    if unfinished:
        print(f"no result file yet: seeds {unfinished} have not finished")
    return not unfinished


def mean_of(per_seed: Mapping[int, Mapping[str, float]], key: str) -> float:
    """The mean over seeds of one per-seed value."""
    return float(np.mean([values[key] for values in per_seed.values()]))
