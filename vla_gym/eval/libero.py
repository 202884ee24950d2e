"""LIBERO evaluation: every task of a suite x its first ``num_trials`` init states, once each.

Trials run over a vector env in rounds: round ``r`` resets with seed ``r * num_envs``, which
puts trial ``r * num_envs + i`` in env ``i`` (task ``k % num_tasks``, init state
``k // num_tasks``; see ``LiberoEnv.reset``). With ``num_envs`` equal to the number of tasks each
env keeps its task (no scene rebuilds). A trial succeeds when ``success_once`` is set when its
episode ends. The report gives per-task success and the suite's mean::

    python -m vla_gym.eval.libero --suite spatial --num-trials 50 --policy random
    python -m vla_gym.eval.libero --suite object --num-trials 5 --policy expert
    python -m vla_gym.eval.libero --suite 10 --tasks 0,3 --num-trials 5 --max-steps 100
    python -m vla_gym.eval.libero --suite goal --policy runs/.../checkpoints/latest.pt

Assets: ``--libero-assets`` or ``$VLA_GYM_LIBERO_ASSETS``. The offline test pack in
``../shared/assets/libero`` has stand-in meshes; do not report its success rates as LIBERO's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vla_gym.envs.libero.suites import SUITES, get_suite
from vla_gym.eval.common import CheckpointPolicy, checkpoint_env_kwargs

# (batched obs, infos) -> batched actions
BatchPolicy = Callable[[Any, Mapping[str, Any]], np.ndarray]

# what the protocol decides itself; a checkpoint's own env settings never override these
_PROTOCOL_KWARGS = ("suite", "task_id", "task_ids", "init_state_id", "max_steps")


@dataclass
class LiberoEvalResult:
    suite: str
    policy: str
    num_trials: int
    max_steps: int
    per_task: dict[str, float]  # task language -> success rate
    success: float  # mean over trials (equal trials per task: also the mean over tasks)
    trials: list[tuple[int, int, bool]]  # (task_id, init_state_id, success)
    seconds: float
    env_steps: int


def zero_policy(action_shape: tuple[int, ...]) -> BatchPolicy:
    """Holds still with the gripper open (the last action dimension is the gripper)."""

    def act(obs: Any, infos: Mapping[str, Any]) -> np.ndarray:
        actions = np.zeros(action_shape, np.float32)
        actions[..., -1] = -1.0
        return actions

    return act


def random_policy(action_space, seed: int) -> BatchPolicy:
    action_space.seed(seed)
    return lambda obs, infos: action_space.sample()


def expert_policy(env_id: str, num_envs: int, action_chunk: int = 1) -> BatchPolicy:
    """The scripted expert, one per env, each fed its env's slice of the infos."""
    from vla_gym.eval.common import env_info
    from vla_gym.experts import make_expert

    experts = [make_expert(env_id, action_chunk=action_chunk) for _ in range(num_envs)]

    def act(obs: Any, infos: Mapping[str, Any]) -> np.ndarray:
        return np.stack([e.act(None, env_info(infos, i)) for i, e in enumerate(experts)])

    return act


def make_vector_env(env_id: str, num_envs: int, backend: str, **env_kwargs: Any):
    import vla_gym

    # A LIBERO env builds its scene at its first reset (seconds to minutes per worker on a busy
    # CPU), so resets get more time than the vector layer's default.
    timeout = {"step_timeout": 1800.0} if backend != "sync" else {}
    return vla_gym.make_vec(env_id, num_envs, backend=backend, **timeout, **env_kwargs)


def evaluate(
    suite: str,
    policy: str | BatchPolicy = "random",
    *,
    num_trials: int = 50,
    tasks: list[int] | None = None,
    num_envs: int | None = None,
    backend: str = "subproc",
    seed: int = 0,
    progress: bool = True,
    **env_kwargs: Any,
) -> LiberoEvalResult:
    """Run ``num_trials`` init states of each task (default all tasks of the suite).

    ``policy`` is ``"random"``, ``"zero"``, ``"expert"`` (the scripted expert on privileged
    state; flat observations unless ``obs_mode`` is given), a trainer checkpoint path
    (deterministic actions, on the observation settings it was trained with) or a callable
    ``(obs, infos) -> actions`` acting for the whole vector env. ``env_kwargs`` go to every
    env (``image_size``, ``libero_assets``, ``max_steps``, ``action_chunk``, ...).
    """
    spec = get_suite(suite)
    if num_trials < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials}")
    if policy == "expert":
        env_kwargs.setdefault("obs_mode", "flat")  # the expert reads info, not pictures
    elif isinstance(policy, str) and policy not in ("random", "zero"):
        env_kwargs = {**checkpoint_env_kwargs(policy, _PROTOCOL_KWARGS), **env_kwargs}
    if tasks is not None:
        env_kwargs["task_ids"] = list(tasks)
    num_envs = num_envs or (len(tasks) if tasks is not None else 10)
    envs = make_vector_env(spec.env_id, num_envs, backend, **env_kwargs)
    try:
        languages = envs.get_attr("task_languages")[0]
        pool = envs.get_attr("task_pool")[0]
        max_steps = envs.get_attr("max_episode_steps")[0]
        if isinstance(policy, str):
            name = policy
            if policy == "random":
                policy = random_policy(envs.action_space, seed)
            elif policy == "zero":
                policy = zero_policy(envs.action_space.shape)
            elif policy == "expert":
                chunk = env_kwargs.get("action_chunk", 1)
                policy = expert_policy(spec.env_id, envs.num_envs, chunk)
            else:
                policy = CheckpointPolicy(policy, envs).act
        else:
            name = getattr(policy, "__name__", type(policy).__name__)
        start = time.perf_counter()
        trials, env_steps = _run(envs, policy, len(pool) * num_trials, progress)
    finally:
        envs.close()
    per_task_results: dict[int, list[bool]] = defaultdict(list)
    for task, _, success in trials:
        per_task_results[task].append(success)
    per_task = {languages[t]: float(np.mean(per_task_results[t])) for t in pool}
    return LiberoEvalResult(
        suite=suite,
        policy=name,
        num_trials=num_trials,
        max_steps=int(max_steps),
        per_task=per_task,
        success=float(np.mean([s for *_, s in trials])),
        trials=sorted(trials),
        seconds=time.perf_counter() - start,
        env_steps=env_steps,
    )


def _run(envs, policy: BatchPolicy, total: int, progress: bool):
    """Rounds of ``num_envs`` trials; in each, step until every env's first episode ended."""
    num_envs = envs.num_envs
    trials: list[tuple[int, int, bool]] = []
    env_steps = 0
    for first in range(0, total, num_envs):
        active = np.arange(num_envs) < total - first  # the last round may be partial
        obs, infos = envs.reset(seed=first)
        running = active.copy()
        while running.any():
            obs, _, terminated, truncated, infos = envs.step(policy(obs, infos))
            env_steps += int(np.asarray(infos["executed_steps"])[running].sum())
            for i in np.flatnonzero(running & (terminated | truncated)):
                trial = (int(infos["task_id"][i]), int(infos["init_state_id"][i]))
                trials.append((*trial, bool(infos["success_once"][i])))
                running[i] = False
        if progress:
            print(f"\r{len(trials)}/{total} trials", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return trials, env_steps


def format_report(result: LiberoEvalResult) -> str:
    lines = [
        f"LIBERO-{result.suite}, policy {result.policy}: {len(result.trials)} trials "
        f"({result.num_trials} init states per task), {result.max_steps}-step limit, "
        f"{result.seconds:.0f} s ({result.env_steps / max(result.seconds, 1e-9):.1f} env steps/s)",
        "",
        f"{'success':>8}  task",
    ]
    lines += [f"{value:>8.2f}  {task}" for task, value in result.per_task.items()]
    lines += ["", f"suite success: {100 * result.success:.1f}%"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> LiberoEvalResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="spatial", choices=list(SUITES))
    parser.add_argument(
        "--policy", default="random", help="random, zero, expert, or a trainer checkpoint path"
    )
    parser.add_argument("--num-trials", type=int, default=50, help="init states per task")
    parser.add_argument("--tasks", default=None, help="comma-separated task ids (default all)")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--backend", default="subproc", choices=["sync", "subproc", "ray"])
    parser.add_argument("--max-steps", type=int, default=None, help="default: the suite's")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--libero-assets", default=None)
    parser.add_argument("--seed", type=int, default=0, help="policy seed (trials are fixed)")
    parser.add_argument("--json", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    env_kwargs: dict[str, Any] = {"image_size": args.image_size}
    if args.max_steps is not None:
        env_kwargs["max_steps"] = args.max_steps
    if args.libero_assets is not None:
        env_kwargs["libero_assets"] = args.libero_assets
    tasks = [int(t) for t in args.tasks.split(",")] if args.tasks else None
    result = evaluate(
        args.suite,
        args.policy,
        num_trials=args.num_trials,
        tasks=tasks,
        num_envs=args.num_envs,
        backend=args.backend,
        seed=args.seed,
        **env_kwargs,
    )
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(asdict(result), file, indent=2)
    return result


if __name__ == "__main__":
    main()
