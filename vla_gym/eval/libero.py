"""LIBERO evaluation: every task of a suite x its first ``num_trials`` init states, once each.

Trials run over a vector env in rounds: round ``r`` resets with seed ``r * num_envs``, which
puts trial ``r * num_envs + i`` in env ``i`` (task ``k % num_tasks``, init state
``k // num_tasks``; see ``LiberoEnv.reset``). With ``num_envs`` equal to the number of tasks each
env keeps its task (no scene rebuilds). A trial succeeds when ``success_once`` is set when its
episode ends. The report gives per-task success and the suite's mean. ``progress`` and
``results_path`` (one JSON line per task as its trials finish): see
:mod:`vla_gym.eval.progress`::

    python -m vla_gym.eval.libero --suite spatial --num-trials 50 --policy random
    python -m vla_gym.eval.libero --suite object --num-trials 5 --policy expert
    python -m vla_gym.eval.libero --suite 10 --tasks 0,3 --num-trials 5 env.kwargs.max_steps=100
    python -m trainers eval --checkpoint runs/.../checkpoints/latest.pt   # a trained policy

Env kwargs: ``env.kwargs.KEY=VALUE`` or ``--env-kwargs '{KEY: VALUE}'`` (see
:mod:`vla_gym.cli`); ``--max-steps``, ``--image-size`` and ``--libero-assets`` are short for the
env kwargs of the same names. Assets: ``env.kwargs.libero_assets`` or
``$VLA_GYM_LIBERO_ASSETS``. An asset pack with stand-in meshes (offline tests) gives no LIBERO
success rates to report.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from vla_gym.envs.libero.suites import SUITES, get_suite
from vla_gym.eval.envs import check_protocol_kwargs, env_only, make_vector_env, trials_per_task
from vla_gym.eval.policy import (
    POLICY_HELP,
    Policy,
    PolicySpec,
    build_policy,
    check_policy_spec,
    policy_name,
    split_infos,
)
from vla_gym.eval.progress import (
    EvalProgress,
    parse_command,
    report_result,
)
from vla_gym.eval.result import EvalResult

NUM_INIT_STATES = 50  # recorded initial states per task: the protocol's trials
# The command line's own flags for some env kwargs: flag -> env kwarg.
SHORTHANDS = {
    "--max-steps": "max_steps",
    "--image-size": "image_size",
    "--libero-assets": "libero_assets",
}
# A LIBERO env builds its scene at its first reset (seconds to minutes per worker on a busy
# CPU), so worker processes get more time than the vector layer's default.
RESET_TIMEOUT = 1800.0
# Env kwargs the protocol sets itself (a caller must not override them).
# (``task_ids`` is allowed: the same as ``tasks``, a subset of the suite's tasks.)
FIXED_KWARGS = ("suite", "task_id", "init_state_id", "init_state_ids")


def evaluate(
    suite: str,
    policy: PolicySpec = "random",
    *,
    episodes: int | None = None,
    num_trials: int | None = None,
    tasks: list[int] | None = None,
    num_envs: int | None = None,
    backend: str = "auto",
    seed: int = 0,
    step_timeout: float | None = None,
    progress: bool | None = None,
    results_path: str | Path | None = None,
    **env_kwargs: Any,
) -> EvalResult:
    """Run ``num_trials`` init states of each task (default all tasks of the suite).

    ``policy``: a :class:`~vla_gym.eval.Policy`, a factory (vector env -> Policy), ``"random"``,
    ``"zero"`` (hold still, gripper open) or ``"expert"`` (the scripted expert on privileged
    state; flat observations unless ``obs_mode`` is given). The size: ``num_trials`` init
    states per task, or an ``episodes`` budget spread over the tasks (at least one each, at
    most 50), default all 50. ``env_kwargs`` go to every env (``image_size``,
    ``libero_assets``, ``max_steps``, ``action_chunk``, ...). ``num_envs`` defaults to the
    number of tasks (at most 10).
    """
    spec = get_suite(suite)
    check_policy_spec(policy)
    check_protocol_kwargs("LIBERO", env_kwargs, FIXED_KWARGS)
    if episodes is not None and num_trials is not None:
        raise ValueError("give episodes= or num_trials=, not both")
    if num_trials is not None and num_trials < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials}")
    if policy == "expert":
        env_kwargs.setdefault("obs_mode", "flat")  # the expert reads info, not pictures
    if tasks is not None:
        if "task_ids" in env_kwargs:
            raise ValueError("give tasks= or the env kwarg task_ids=, not both")
        env_kwargs["task_ids"] = list(tasks)
    if "task_ids" in env_kwargs:
        num_tasks = len(env_kwargs["task_ids"])
    else:
        num_tasks = _num_tasks(spec.env_id, env_kwargs)
    if num_trials is None:
        num_trials = trials_per_task(
            episodes or num_tasks * NUM_INIT_STATES, num_tasks, NUM_INIT_STATES
        )
    total = num_tasks * num_trials
    num_envs = min(num_envs or min(num_tasks, 10), total)
    if step_timeout is None and backend != "sync":
        step_timeout = RESET_TIMEOUT
    envs = make_vector_env(
        spec.env_id, num_envs, backend=backend, step_timeout=step_timeout, **env_kwargs
    )
    tracker = EvalProgress(
        total,
        "trial",
        progress=progress,
        results_path=results_path,
        protocol=f"libero/{suite}",
        env_id=spec.env_id,
    )
    try:
        languages = envs.get_attr("task_languages")[0]
        pool = envs.get_attr("task_pool")[0]
        max_steps = envs.get_attr("max_episode_steps")[0]
        batch_policy = build_policy(policy, envs, env_id=spec.env_id, seed=seed)
        start = time.perf_counter()
        trials, env_steps = _run(envs, batch_policy, len(pool), num_trials, languages, tracker)
    finally:
        tracker.close()
        envs.close()
    per_task_results: dict[int, list[bool]] = defaultdict(list)
    for task, _, success in trials:
        per_task_results[task].append(success)
    result = EvalResult(
        protocol=f"libero/{suite}",
        env_id=spec.env_id,
        policy=policy_name(policy),
        headline="success",
        # equal trials per task: the mean over trials is also the mean over tasks
        metrics={"success": float(np.mean([s for *_, s in trials]))},
        per_task={languages[t]: float(np.mean(per_task_results[t])) for t in pool},
        episodes=len(trials),
        env_steps=env_steps,
        seconds=time.perf_counter() - start,
        details={
            "suite": suite,
            "num_trials": num_trials,
            "max_steps": int(max_steps),
            "trials": sorted(trials),  # (task_id, init_state_id, success)
        },
    )
    result.report = format_report(result)
    return result


def _num_tasks(env_id: str, env_kwargs: dict[str, Any]) -> int:
    """The suite's task count, from one env (built without its scene: no reset)."""
    env = gym.make(env_id, **env_only(env_kwargs))
    try:
        return len(env.unwrapped.task_pool)
    finally:
        env.close()


def _run(
    envs,
    policy: Policy,
    num_tasks: int,
    num_trials: int,
    languages: list[str],
    tracker: EvalProgress,
):
    """Rounds of ``num_envs`` trials; in each, step until every env's first episode ended."""
    num_envs = envs.num_envs
    total = num_tasks * num_trials
    trials: list[tuple[int, int, bool]] = []
    per_task: dict[int, list[bool]] = defaultdict(list)
    env_steps = 0
    for first in range(0, total, num_envs):
        active = np.arange(num_envs) < total - first  # the last round may be partial
        obs, infos = envs.reset(seed=first)
        running = active.copy()
        while running.any():
            obs, _, terminated, truncated, infos = envs.step(
                policy.act(obs, split_infos(infos, num_envs))
            )
            env_steps += int(np.asarray(infos["executed_steps"])[running].sum())
            for i in np.flatnonzero(terminated | truncated):
                policy.episode_done(int(i))
                if running[i]:
                    task, success = int(infos["task_id"][i]), bool(infos["success_once"][i])
                    trials.append((task, int(infos["init_state_id"][i]), success))
                    running[i] = False
                    per_task[task].append(success)
                    if len(per_task[task]) == num_trials:
                        tracker.write(
                            task_id=task,
                            task=languages[task],
                            trials=num_trials,
                            successes=sum(per_task[task]),
                            success=float(np.mean(per_task[task])),
                        )
                    tracker.update(success=float(np.mean([s for *_, s in trials])))
    return trials, env_steps


def format_report(result: EvalResult) -> str:
    details = result.details
    lines = [
        f"LIBERO-{details['suite']}, policy {result.policy}: {result.episodes} trials "
        f"({details['num_trials']} init states per task), {details['max_steps']}-step limit, "
        f"{result.seconds:.0f} s ({result.env_steps / max(result.seconds, 1e-9):.1f} env steps/s)",
        "",
        f"{'success':>8}  task",
    ]
    lines += [f"{value:>8.2f}  {task}" for task, value in result.per_task.items()]
    lines += ["", f"suite success: {100 * result.score:.1f}%"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> EvalResult:
    parser = argparse.ArgumentParser(
        prog="python -m vla_gym.eval.libero", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--suite", default="spatial", choices=list(SUITES))
    parser.add_argument(
        "--policy", default="random", help=POLICY_HELP.format("random | zero | expert")
    )
    parser.add_argument("--num-trials", type=int, default=NUM_INIT_STATES, help="per task")
    parser.add_argument("--tasks", default=None, help="comma-separated task ids (default all)")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--backend", default="auto", choices=["auto", "sync", "subproc", "ray"])
    parser.add_argument(
        "--max-steps", type=int, help="short for env.kwargs.max_steps (default: the suite's)"
    )
    parser.add_argument(
        "--image-size", type=int, help="short for env.kwargs.image_size (default 256)"
    )
    parser.add_argument("--libero-assets", help="short for env.kwargs.libero_assets")
    parser.add_argument("--seed", type=int, default=0, help="policy seed (trials are fixed)")
    args, kwargs = parse_command(parser, argv, evaluate, SHORTHANDS, FIXED_KWARGS)
    tasks = [int(t) for t in args.tasks.split(",")] if args.tasks else None
    result = evaluate(
        args.suite,
        args.policy,
        num_trials=args.num_trials,
        tasks=tasks,
        num_envs=args.num_envs,
        backend=args.backend,
        seed=args.seed,
        **kwargs,
    )
    report_result(result, args)
    return result


if __name__ == "__main__":
    main()
