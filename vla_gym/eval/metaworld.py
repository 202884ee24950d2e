"""Meta-World evaluation: MT50 (50 tasks x 10 trials) and ML45 test (5 tasks x 20 trials).

Every (task, trial) of the suite is run exactly once over a vector env: env ``i`` (seeded ``i``)
takes tasks ``i, i + n, i + 2n, ...`` with all their trials (``task_stride=n``, see
:mod:`vla_gym.envs.metaworld.tasks`). An episode counts as a success when ``success_once`` is set
when it ends. The report gives per-task success, the four difficulty buckets and "Avg." (the mean
of the bucket means, as in published tables)::

    python -m vla_gym.eval.metaworld --policy expert            # scripted metaworld.policies
    python -m vla_gym.eval.metaworld --policy random --suite ML45-test
    python -m vla_gym.eval.metaworld --policy runs/x/checkpoints/latest.pt   # trainer checkpoint

``--max-episode-steps`` changes the horizon (default 100, the RL recipes'; RLinf's standalone
evaluation uses 160, Meta-World's own horizon is 500).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from vla_gym.envs.metaworld.difficulty import TASK_BUCKET, average_of_buckets, bucket_means
from vla_gym.envs.metaworld.tasks import make_suite
from vla_gym.eval.common import CheckpointPolicy, RandomPolicy, checkpoint_env_kwargs, env_info

SUITE_IDS = {
    "MT50": "VLA/MetaWorld-MT50-v0",
    "ML45-test": "VLA/MetaWorld-ML45-Test-v0",
    "ML45-train": "VLA/MetaWorld-ML45-Train-v0",
}
# Env kwargs the protocol sets itself (a checkpoint's own settings must not override them).
_PROTOCOL_KWARGS = ("suite", "task", "num_trials", "task_stride", "max_steps")


class BatchPolicy(Protocol):
    """Acts for all envs of a vector env at once."""

    def act(self, obs: Any, infos: dict[str, Any]) -> np.ndarray: ...

    def episode_done(self, env_index: int) -> None: ...


@dataclass
class EvalResult:
    suite: str
    policy: str
    episodes: int
    max_episode_steps: int
    per_task: dict[str, float]
    buckets: dict[str, float]
    average: float  # mean of the bucket means ("Avg.")
    task_mean: float  # plain mean over tasks
    seconds: float
    env_steps: int
    episodes_per_task: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------ policies
class ExpertPolicy:
    """One scripted ``metaworld.policies`` expert per env, fed that env's slice of ``infos``."""

    def __init__(self, num_envs: int, action_chunk: int = 1) -> None:
        from vla_gym.experts import make_expert

        self.experts = [
            make_expert("VLA/MetaWorld-v0", action_chunk=action_chunk) for _ in range(num_envs)
        ]

    def act(self, obs: Any, infos: dict[str, Any]) -> np.ndarray:
        return np.stack(
            [expert.act(None, env_info(infos, i)) for i, expert in enumerate(self.experts)]
        )

    def episode_done(self, env_index: int) -> None:
        self.experts[env_index].reset()


# ------------------------------------------------------------------------------ helpers


def make_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """``gym.make`` as a picklable module-level function (the env factory of worker processes)."""
    return gym.make(env_id, **env_kwargs)


def make_vector_env(
    env_id: str,
    num_envs: int,
    backend: str,
    step_timeout: float | None = None,
    **env_kwargs: Any,
):
    """``vla_gym.make_vec`` with NEXT_STEP autoreset (Gymnasium's sync env if it is missing)."""
    import vla_gym

    mode = gym.vector.AutoresetMode.NEXT_STEP
    env_fn = functools.partial(make_env, env_id)
    if importlib.util.find_spec("vla_gym.vector") is None:
        return gym.vector.SyncVectorEnv(
            [functools.partial(env_fn, **env_kwargs)] * num_envs, autoreset_mode=mode
        )
    if backend == "auto":
        has_subproc = importlib.util.find_spec("vla_gym.vector.subproc") is not None
        backend = "subproc" if has_subproc and num_envs > 1 else "sync"
    vector_kwargs = {"step_timeout": step_timeout} if step_timeout is not None else {}
    return vla_gym.make_vec(
        env_fn, num_envs, backend=backend, autoreset_mode=mode, **vector_kwargs, **env_kwargs
    )


def env_quotas(num_tasks: int, num_trials: int, num_envs: int) -> list[int]:
    """Episodes env ``i`` runs: all trials of tasks ``i, i + n, ...``."""
    return [len(range(i, num_tasks, num_envs)) * num_trials for i in range(num_envs)]


# ------------------------------------------------------------------------------ protocol
def evaluate(
    policy: str | Callable[[gym.vector.VectorEnv], BatchPolicy] = "expert",
    suite: str = "MT50",
    *,
    num_envs: int = 10,
    num_trials: int | None = None,
    max_episode_steps: int = 100,
    backend: str = "auto",
    step_timeout: float | None = None,
    seed: int = 0,
    progress: bool = False,
    **env_kwargs: Any,
) -> EvalResult:
    """Run every (task, trial) of ``suite`` once and score it (see module doc).

    ``policy`` is ``"expert"``, ``"random"``, a trainer checkpoint path, or a callable taking the
    vector env and returning a :class:`BatchPolicy`. ``seed`` seeds the policy, not the trials
    (those are fixed by the suite).
    """
    if suite not in SUITE_IDS:
        raise ValueError(f"suite must be one of {list(SUITE_IDS)}, got {suite!r}")
    spec = make_suite(suite, num_trials=num_trials)
    num_envs = max(1, min(int(num_envs), len(spec.tasks)))
    name = policy if isinstance(policy, str) else getattr(policy, "__name__", "custom")
    if isinstance(policy, str) and policy not in ("expert", "random"):
        env_kwargs = {**checkpoint_env_kwargs(policy, _PROTOCOL_KWARGS), **env_kwargs}
    envs = make_vector_env(
        SUITE_IDS[suite],
        num_envs,
        backend,
        step_timeout,
        num_trials=spec.num_trials,
        task_stride=num_envs,
        max_steps=max_episode_steps,
        **env_kwargs,
    )
    try:
        batch_policy = _make_batch_policy(policy, envs, num_envs, seed, env_kwargs)
        start = time.perf_counter()
        successes, steps = _run(
            envs, batch_policy, env_quotas(len(spec.tasks), spec.num_trials, num_envs), progress
        )
        seconds = time.perf_counter() - start
    finally:
        envs.close()
    missing = [t for t in spec.tasks if len(successes[t]) != spec.num_trials]
    if missing:
        raise RuntimeError(f"evaluation did not cover every trial of: {missing}")
    per_task = {task: float(np.mean(successes[task])) for task in spec.tasks}
    return EvalResult(
        suite=suite,
        policy=str(name),
        episodes=sum(len(v) for v in successes.values()),
        max_episode_steps=max_episode_steps,
        per_task=per_task,
        buckets=bucket_means(per_task),
        average=average_of_buckets(per_task),
        task_mean=float(np.mean(list(per_task.values()))),
        seconds=seconds,
        env_steps=steps,
        episodes_per_task={task: len(successes[task]) for task in spec.tasks},
    )


def _make_batch_policy(policy, envs, num_envs: int, seed: int, env_kwargs) -> BatchPolicy:
    if callable(policy):
        return policy(envs)
    if policy == "expert":
        return ExpertPolicy(num_envs, action_chunk=int(env_kwargs.get("action_chunk", 1)))
    if policy == "random":
        return RandomPolicy(envs.action_space, seed)
    import torch

    torch.manual_seed(seed)
    return CheckpointPolicy(policy, envs)


def _run(envs, policy: BatchPolicy, quotas: list[int], progress: bool) -> tuple[dict, int]:
    """Step until every env has finished its quota of episodes (NEXT_STEP autoreset)."""
    successes: dict[str, list[bool]] = defaultdict(list)
    done = np.zeros(len(quotas), dtype=int)
    resetting = np.zeros(len(quotas), dtype=bool)  # NEXT_STEP: this step only resets them
    obs, infos = envs.reset(seed=0)
    steps = 0
    while (done < quotas).any():
        counted = (done < quotas) & ~resetting
        obs, _, terminated, truncated, infos = envs.step(policy.act(obs, infos))
        steps += int(counted.sum())
        resetting = terminated | truncated
        for i in np.flatnonzero(resetting):
            policy.episode_done(int(i))
            if done[i] < quotas[i]:
                info = env_info(infos, int(i))
                successes[str(info["task"])].append(bool(info["success_once"]))
                done[i] += 1
                if progress:
                    print(f"\r{done.sum()}/{sum(quotas)} episodes", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return successes, steps


# ------------------------------------------------------------------------------ report
def format_report(result: EvalResult) -> str:
    lines = [
        f"Meta-World {result.suite}, policy {result.policy}: {result.episodes} episodes, "
        f"{result.max_episode_steps}-step limit, {result.seconds:.0f} s "
        f"({result.env_steps / max(result.seconds, 1e-9):.0f} env steps/s)",
        "",
        f"{'task':<28} {'bucket':<10} {'success':>8}",
    ]
    for task, value in result.per_task.items():
        lines.append(f"{task:<28} {TASK_BUCKET[task]:<10} {value:>8.2f}")
    lines += ["", "| " + " | ".join([*result.buckets, "Avg."]) + " |"]
    lines.append("|" + "---|" * (len(result.buckets) + 1))
    values = [*result.buckets.values(), result.average]
    lines.append("| " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    lines.append(f"(mean over tasks: {100 * result.task_mean:.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> EvalResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="expert", help="expert | random | checkpoint path")
    parser.add_argument("--suite", default="MT50", choices=list(SUITE_IDS))
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--num-trials", type=int, default=None, help="override trials per task")
    parser.add_argument("--max-episode-steps", type=int, default=100)
    parser.add_argument("--backend", default="auto", choices=["auto", "sync", "subproc", "ray"])
    parser.add_argument("--seed", type=int, default=0, help="policy seed (trials are fixed)")
    parser.add_argument("--obs-mode", default=None, choices=["vla", "flat"])
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--render-quality", default=None, choices=["auto", "fast", "full"])
    parser.add_argument(
        "--step-timeout", type=float, default=None, help="vector worker timeout (s), busy hosts"
    )
    parser.add_argument("--json", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    env_kwargs = {
        key: value
        for key, value in (
            ("obs_mode", args.obs_mode),
            ("image_size", args.image_size),
            ("render_quality", args.render_quality),
        )
        if value is not None
    }
    result = evaluate(
        args.policy,
        args.suite,
        num_envs=args.num_envs,
        num_trials=args.num_trials,
        max_episode_steps=args.max_episode_steps,
        backend=args.backend,
        step_timeout=args.step_timeout,
        seed=args.seed,
        progress=sys.stderr.isatty(),
        **env_kwargs,
    )
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(asdict(result), handle, indent=2)
    return result


if __name__ == "__main__":
    main()
