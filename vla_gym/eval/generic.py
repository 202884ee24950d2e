"""The generic evaluation: ``episodes`` seeded episodes on any env (PandaPickCube, ...).

Episodes run in rounds over a vector env: round ``r`` resets env ``i`` with seed
``seed + r * num_envs + i`` and steps until every env's first episode has ended; the first
``episodes`` episodes to end are scored. Reported: the mean of ``success_once`` at episode end
(the headline), the return, the episode length (``elapsed_steps``) and the reward per executed
env step. ``progress`` and ``results_path`` (one JSON line per scored episode): see
:mod:`vla_gym.eval.progress`::

    python -m vla_gym.eval --env-id VLA/PandaPickCube-v0 --policy expert --episodes 20
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.eval.envs import make_vector_env
from vla_gym.eval.policy import (
    Policy,
    PolicySpec,
    build_policy,
    check_policy_spec,
    policy_name,
    split_infos,
)
from vla_gym.eval.progress import EvalProgress, finite
from vla_gym.eval.result import EvalResult

DEFAULT_EPISODES = 10


def evaluate(
    policy: PolicySpec,
    env_id: str,
    *,
    episodes: int | None = None,
    num_envs: int = 1,
    backend: str = "auto",
    seed: int = 0,
    step_timeout: float | None = None,
    progress: bool | None = None,
    results_path: str | Path | None = None,
    episode_metrics: Mapping[str, str] | None = None,
    **env_kwargs: Any,
) -> EvalResult:
    """Score ``episodes`` episodes of ``env_id`` (see module doc).

    ``episode_metrics`` adds metrics read from each episode's final info (metric name -> info
    key, e.g. ``{"avg_len": "subtasks_solved"}``); ``env_kwargs`` go to every env.
    """
    check_policy_spec(policy)
    episodes = DEFAULT_EPISODES if episodes is None else int(episodes)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes!r}")
    num_envs = max(1, min(int(num_envs), episodes))
    envs = make_vector_env(
        env_id, num_envs, backend=backend, step_timeout=step_timeout, **env_kwargs
    )
    start = time.perf_counter()
    tracker = EvalProgress(
        episodes,
        "episode",
        progress=progress,
        results_path=results_path,
        protocol="generic",
        env_id=env_id,
    )
    try:
        batch_policy = build_policy(policy, envs, env_id=env_id, seed=seed)
        records, env_steps, reward_sum = _run(
            envs, batch_policy, episodes, seed, dict(episode_metrics or {}), tracker
        )
    finally:
        tracker.close()
        envs.close()
    records = records[:episodes]
    metrics = {
        "success_once": float(np.mean([r["success_once"] for r in records])),
        "return": float(np.mean([r["return"] for r in records])),
        "episode_len": float(np.mean([r["episode_len"] for r in records])),
        "reward": reward_sum / max(env_steps, 1),
    }
    for name in episode_metrics or {}:
        values = [r[name] for r in records if np.isfinite(r[name])]
        if values:
            metrics[name] = float(np.mean(values))
    result = EvalResult(
        protocol="generic",
        env_id=env_id,
        policy=policy_name(policy),
        headline="success_once",
        metrics=metrics,
        per_task={},
        episodes=len(records),
        env_steps=env_steps,
        seconds=time.perf_counter() - start,
        details={"episodes": records},
    )
    result.report = format_report(result)
    return result


def _value(info: Mapping[str, Any], key: str, default: float) -> float:
    value = info.get(key)
    return default if value is None else float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _run(
    envs, policy: Policy, episodes: int, seed: int, extra: dict[str, str], tracker: EvalProgress
) -> tuple[list[dict[str, float]], int, float]:
    """Rounds of one episode per env (NEXT_STEP autoreset: the step after an episode's end
    only resets that env, executes nothing and earns nothing)."""
    num_envs = envs.num_envs
    records: list[dict[str, float]] = []
    env_steps, reward_sum = 0, 0.0
    round_index = 0
    while len(records) < episodes:
        first = seed + round_index * num_envs
        obs, infos = envs.reset(seed=[first + i for i in range(num_envs)])
        infos = split_infos(infos, num_envs)
        resetting = np.zeros(num_envs, dtype=bool)
        finished = np.zeros(num_envs, dtype=bool)
        returns = np.zeros(num_envs)
        while not finished.all():
            obs, rewards, terminated, truncated, batch_infos = envs.step(policy.act(obs, infos))
            infos = split_infos(batch_infos, num_envs)
            rewards = np.where(resetting, 0.0, np.asarray(rewards, dtype=np.float64))
            for i in np.flatnonzero(~resetting):
                env_steps += int(_value(infos[i], "executed_steps", 1.0))
            reward_sum += float(rewards.sum())
            returns += rewards
            done = np.asarray(terminated) | np.asarray(truncated)
            for i in np.flatnonzero(done):
                i = int(i)
                policy.episode_done(i)
                if not finished[i]:
                    finished[i] = True
                    records.append(
                        {
                            "seed": first + i,
                            "success_once": _value(infos[i], "success_once", 0.0),
                            "return": float(returns[i]),
                            "episode_len": _value(infos[i], "elapsed_steps", 0.0),
                            **{name: _value(infos[i], key, np.nan) for name, key in extra.items()},
                        }
                    )
                    if len(records) <= episodes:  # later ones are not scored
                        record = {k: finite(v) for k, v in records[-1].items()}
                        tracker.write(episode=len(records) - 1, **record)
                        rate = np.mean([r["success_once"] for r in records])
                        tracker.update(success=float(rate))
            returns[done] = 0.0
            resetting = done
        round_index += 1
    return records, env_steps, reward_sum


def format_report(result: EvalResult) -> str:
    metrics = ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items())
    return (
        f"{result.env_id}, policy {result.policy}: {result.episodes} episodes, "
        f"{result.seconds:.0f} s ({result.env_steps / max(result.seconds, 1e-9):.0f} env "
        f"steps/s)\n{metrics}"
    )
