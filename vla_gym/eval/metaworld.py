"""Meta-World evaluation: MT50 (50 tasks x 10 trials) and ML45 test (5 tasks x 20 trials).

Every (task, trial) of the suite is run exactly once over a vector env: env ``i`` (seeded ``i``)
takes tasks ``i, i + n, i + 2n, ...`` with all their trials (``task_stride=n``, see
:mod:`vla_gym.envs.metaworld.tasks`). An episode counts as a success when ``success_once`` is set
when it ends. The report gives per-task success, the four difficulty buckets and "Avg." (the mean
of the bucket means, as in published tables). ``progress`` and ``results_path`` (one JSON line
per task as its trials finish): see :mod:`vla_gym.eval.progress`::

    python -m vla_gym.eval.metaworld --policy expert            # scripted metaworld.policies
    python -m vla_gym.eval.metaworld --policy random --suite ML45-test
    python -m trainers eval --checkpoint runs/x/checkpoints/latest.pt   # a trained policy

Env kwargs: ``env.kwargs.KEY=VALUE`` or ``--env-kwargs '{KEY: VALUE}'`` (see
:mod:`vla_gym.cli`); ``--obs-mode``, ``--image-size`` and ``--render-quality`` are short for the
env kwargs of the same names. ``env.kwargs.max_steps`` (or its shorthand
``--max-episode-steps``) changes the horizon (default: the env's, 100 as in the RL recipes;
RLinf's standalone evaluation uses 160, Meta-World's own is 500).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.envs.metaworld.difficulty import TASK_BUCKET, average_of_buckets, bucket_means
from vla_gym.envs.metaworld.tasks import make_suite
from vla_gym.eval.envs import check_protocol_kwargs, make_vector_env, trials_per_task
from vla_gym.eval.policy import (
    POLICY_HELP,
    Policy,
    PolicySpec,
    build_policy,
    check_policy_spec,
    env_info,
    policy_name,
)
from vla_gym.eval.progress import (
    EvalProgress,
    parse_command,
    report_result,
)
from vla_gym.eval.result import EvalResult

SUITE_IDS = {
    "MT50": "VLA/MetaWorld-MT50-v0",
    "ML45-test": "VLA/MetaWorld-ML45-Test-v0",
    "ML45-train": "VLA/MetaWorld-ML45-Train-v0",
}
# Env kwargs the protocol sets itself (a caller must not override them).
FIXED_KWARGS = ("suite", "task", "num_trials", "task_stride")
# The command line's own flags for some env kwargs: flag -> env kwarg.
SHORTHANDS = {
    "--max-episode-steps": "max_steps",
    "--obs-mode": "obs_mode",
    "--image-size": "image_size",
    "--render-quality": "render_quality",
}


def env_quotas(num_tasks: int, num_trials: int, num_envs: int) -> list[int]:
    """Episodes env ``i`` runs: all trials of tasks ``i, i + n, ...``."""
    return [len(range(i, num_tasks, num_envs)) * num_trials for i in range(num_envs)]


# ------------------------------------------------------------------------------ protocol
def evaluate(
    policy: PolicySpec = "expert",
    suite: str = "MT50",
    *,
    episodes: int | None = None,
    num_trials: int | None = None,
    num_envs: int = 10,
    backend: str = "auto",
    seed: int = 0,
    step_timeout: float | None = None,
    progress: bool | None = None,
    results_path: str | Path | None = None,
    **env_kwargs: Any,
) -> EvalResult:
    """Run every (task, trial) of ``suite`` once and score it (see module doc).

    ``policy``: a :class:`~vla_gym.eval.Policy`, a factory (vector env -> Policy), ``"expert"``
    or ``"random"``. The size: ``num_trials`` per task, or an ``episodes`` budget spread over
    the tasks (at least one trial each, at most the suite's), default the whole suite.
    ``env_kwargs`` go to every env (``max_steps``: the horizon). ``seed`` seeds the policy, not
    the trials (those are fixed by the suite).
    """
    if suite not in SUITE_IDS:
        raise ValueError(f"suite must be one of {list(SUITE_IDS)}, got {suite!r}")
    check_policy_spec(policy)
    check_protocol_kwargs("Meta-World", env_kwargs, FIXED_KWARGS)
    if episodes is not None and num_trials is not None:
        raise ValueError("give episodes= or num_trials=, not both")
    full = make_suite(suite)
    if episodes is not None:
        num_trials = trials_per_task(episodes, len(full.tasks), full.num_trials)
    spec = make_suite(suite, num_trials=num_trials)
    num_envs = max(1, min(int(num_envs), len(spec.tasks)))
    envs = make_vector_env(
        SUITE_IDS[suite],
        num_envs,
        backend=backend,
        step_timeout=step_timeout,
        num_trials=spec.num_trials,
        task_stride=num_envs,
        **env_kwargs,
    )
    quotas = env_quotas(len(spec.tasks), spec.num_trials, num_envs)
    tracker = EvalProgress(
        sum(quotas),
        "episode",
        progress=progress,
        results_path=results_path,
        protocol=f"metaworld/{suite}",
        env_id=SUITE_IDS[suite],
    )
    try:
        max_steps = int(envs.get_attr("max_episode_steps")[0])
        batch_policy = build_policy(policy, envs, env_id=SUITE_IDS[suite], seed=seed)
        start = time.perf_counter()
        successes, steps = _run(envs, batch_policy, quotas, spec.num_trials, tracker)
        seconds = time.perf_counter() - start
    finally:
        tracker.close()
        envs.close()
    missing = [t for t in spec.tasks if len(successes[t]) != spec.num_trials]
    if missing:
        raise RuntimeError(f"evaluation did not cover every trial of: {missing}")
    per_task = {task: float(np.mean(successes[task])) for task in spec.tasks}
    buckets = bucket_means(per_task)
    metrics = {
        "success": average_of_buckets(per_task),  # "Avg.": the mean of the bucket means
        "task_mean": float(np.mean(list(per_task.values()))),
        **buckets,
    }
    result = EvalResult(
        protocol=f"metaworld/{suite}",
        env_id=SUITE_IDS[suite],
        policy=policy_name(policy),
        headline="success",
        metrics=metrics,
        per_task=per_task,
        episodes=sum(len(v) for v in successes.values()),
        env_steps=steps,
        seconds=seconds,
        details={
            "suite": suite,
            "max_steps": max_steps,
            "buckets": list(buckets),
            "episodes_per_task": {task: len(successes[task]) for task in spec.tasks},
        },
    )
    result.report = format_report(result)
    return result


def _run(
    envs, policy: Policy, quotas: list[int], num_trials: int, tracker: EvalProgress
) -> tuple[dict, int]:
    """Step until every env has finished its quota of episodes (NEXT_STEP autoreset); a task
    is finished once its ``num_trials`` trials are (one env runs them all)."""
    num_envs = len(quotas)
    successes: dict[str, list[bool]] = defaultdict(list)
    done = np.zeros(num_envs, dtype=int)
    resetting = np.zeros(num_envs, dtype=bool)  # NEXT_STEP: this step only resets them
    obs, infos = envs.reset(seed=0)
    env_infos = [env_info(infos, i) for i in range(num_envs)]
    steps, wins = 0, 0
    while (done < quotas).any():
        counted = (done < quotas) & ~resetting
        obs, _, terminated, truncated, infos = envs.step(policy.act(obs, env_infos))
        env_infos = [env_info(infos, i) for i in range(num_envs)]
        steps += int(counted.sum())
        resetting = terminated | truncated
        for i in np.flatnonzero(resetting):
            policy.episode_done(int(i))
            if done[i] < quotas[i]:
                info = env_infos[i]
                task, success = str(info["task"]), bool(info["success_once"])
                successes[task].append(success)
                done[i] += 1
                wins += success
                if len(successes[task]) == num_trials:
                    trials = successes[task]
                    tracker.write(
                        task=task,
                        trials=num_trials,
                        successes=sum(trials),
                        success=float(np.mean(trials)),
                    )
                tracker.update(success=wins / int(done.sum()))
    return successes, steps


# ------------------------------------------------------------------------------ report
def format_report(result: EvalResult) -> str:
    details = result.details
    lines = [
        f"Meta-World {details['suite']}, policy {result.policy}: {result.episodes} episodes, "
        f"{details['max_steps']}-step limit, {result.seconds:.0f} s "
        f"({result.env_steps / max(result.seconds, 1e-9):.0f} env steps/s)",
        "",
        f"{'task':<28} {'bucket':<10} {'success':>8}",
    ]
    for task, value in result.per_task.items():
        lines.append(f"{task:<28} {TASK_BUCKET[task]:<10} {value:>8.2f}")
    buckets = details["buckets"]
    lines += ["", "| " + " | ".join([*buckets, "Avg."]) + " |"]
    lines.append("|" + "---|" * (len(buckets) + 1))
    values = [*(result.metrics[b] for b in buckets), result.score]
    lines.append("| " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    lines.append(f"(mean over tasks: {100 * result.metrics['task_mean']:.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> EvalResult:
    parser = argparse.ArgumentParser(
        prog="python -m vla_gym.eval.metaworld", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--policy", default="expert", help=POLICY_HELP.format("expert | random"))
    parser.add_argument("--suite", default="MT50", choices=list(SUITE_IDS))
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--num-trials", type=int, default=None, help="override trials per task")
    parser.add_argument(
        "--max-episode-steps", type=int, help="short for env.kwargs.max_steps (default: the env's)"
    )
    parser.add_argument("--backend", default="auto", choices=["auto", "sync", "subproc", "ray"])
    parser.add_argument("--seed", type=int, default=0, help="policy seed (trials are fixed)")
    parser.add_argument("--obs-mode", choices=["vla", "flat"], help="short for env.kwargs.obs_mode")
    parser.add_argument("--image-size", type=int, help="short for env.kwargs.image_size")
    parser.add_argument(
        "--render-quality",
        choices=["auto", "fast", "full"],
        help="short for env.kwargs.render_quality",
    )
    parser.add_argument(
        "--step-timeout", type=float, default=None, help="vector worker timeout (s), busy hosts"
    )
    args, kwargs = parse_command(parser, argv, evaluate, SHORTHANDS, FIXED_KWARGS)
    result = evaluate(
        args.policy,
        args.suite,
        num_envs=args.num_envs,
        num_trials=args.num_trials,
        backend=args.backend,
        step_timeout=args.step_timeout,
        seed=args.seed,
        **kwargs,
    )
    report_result(result, args)
    return result


if __name__ == "__main__":
    main()
