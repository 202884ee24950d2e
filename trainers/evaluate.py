"""Evaluation: benchmark protocols, the generic episode loop and annotated episode videos.

``python -m trainers eval --config NAME --checkpoint PATH [dotted.key=value ...]`` runs the
evaluation protocol of the benchmark behind the config's evaluation env
(``env.eval_id or env.id``), chosen from :func:`protocol_table`:

* CALVIN IDs: :func:`vla_gym.eval.calvin.evaluate` (chains of five subtasks in scene D, avg_len),
* Meta-World MT50 / ML45 IDs: :func:`vla_gym.eval.metaworld.evaluate` on that suite,
* LIBERO suite IDs: :func:`vla_gym.eval.libero.evaluate` on that suite,
* anything else (PandaPickCube, BEHAVIOR, single-task Meta-World), or ``--protocol generic``:
  the generic loop, ``N`` deterministic episodes on the evaluation env (``eval/*`` metrics).

The size of a run is an episode budget, ``--episodes`` or else the config's
``env.eval_episodes`` (the full recipes set it to their protocol's size, the ``_cpu`` ones to a
few episodes), capped at the protocol's full size: CALVIN runs that many chains (at most 1000),
Meta-World and LIBERO run every task of the suite with ``ceil(budget / tasks)`` trials each (at
most 10 / 20 per task for MT50 / ML45-test, 50 init states for LIBERO). The policy network and
weights come from the checkpoint; observation/action settings and env kwargs (``env.kwargs``,
``env.eval_kwargs``) from the config, less what a protocol fixes. The episode horizon is the
config's ``env.max_episode_steps`` for Meta-World and LIBERO and the protocol's own for CALVIN
(360 steps per subtask).

The output is the protocol's own report followed by one JSON line of the headline metrics
(``{"protocol": ..., "eval/...": ...}``); ``--video PATH`` also renders one episode on the
evaluation env.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from trainers import checkpoint
from trainers.config import EnvConfig, TrainConfig, load_config
from trainers.placement import env_devices, torch_device
from trainers.policies import make_policy
from trainers.policies.base import ActorCriticPolicy
from trainers.rollout import (
    EpisodeStats,
    RolloutCollector,
    env_kwargs,
    make_single_env,
    make_vector_env,
    obs_to_torch,
)
from trainers.tracking import annotate_frame, write_video


def make_eval_collector(config: TrainConfig, device: torch.device) -> RolloutCollector:
    env = config.env
    kwargs = env_kwargs(env, evaluation=True)
    devices = env_devices(config.cluster.component_placement.get("env", "cpu"))
    env_id = env.eval_id or env.id
    return RolloutCollector(
        lambda n: make_vector_env(
            env_id,
            n,
            kwargs,
            backend=env.backend,
            devices=devices,
            envs_per_worker=env.envs_per_worker,
        ),
        env.eval_num_envs or env.num_envs,
        num_steps=math.ceil(env.max_episode_steps / env.action_chunk),
        episodic=True,
        device=device,
        episode_metrics=env.episode_metrics,
    )


@torch.no_grad()
def evaluate_policy(
    collector: RolloutCollector, policy: ActorCriticPolicy, episodes: int, *, seed: int
) -> EpisodeStats:
    """The first episode of every env, deterministic actions, until ``episodes`` are done."""
    policy.eval()
    total = EpisodeStats()
    round_index = 0
    while total.count < episodes:
        seeds = [seed + round_index * collector.num_envs + i for i in range(collector.num_envs)]
        _, stats = collector.collect(policy, seeds, deterministic=True, record=False)
        total.returns += stats.returns
        total.lengths += stats.lengths
        total.success_once += stats.success_once
        for key, values in stats.extra.items():
            total.extra[key] += values
        total.env_steps += stats.env_steps
        total.reward_sum += stats.reward_sum
        round_index += 1
    keep = slice(0, episodes)
    total.returns, total.lengths = total.returns[keep], total.lengths[keep]
    total.success_once = total.success_once[keep]
    return total


def _batch_one(obs):
    """A single env's observation as a batch of one (vector layout)."""
    if isinstance(obs, dict):
        return {key: _batch_one(value) for key, value in obs.items()}
    if isinstance(obs, str):
        return [obs]
    return np.asarray(obs)[None]


@torch.no_grad()
def record_video(
    config: TrainConfig,
    policy: ActorCriticPolicy,
    path: Path,
    device: torch.device,
    *,
    seed: int = 0,
) -> Path:
    """One deterministic episode rendered to mp4, with the instruction and success drawn on."""
    env = config.env
    kwargs = env_kwargs(env, evaluation=True)
    single = make_single_env(env.eval_id or env.id, render_mode="rgb_array", **kwargs)
    policy.eval()
    try:
        obs, info = single.reset(seed=seed)
        instruction = str(getattr(single.unwrapped, "instruction", ""))
        frames = [annotate_frame(single.render(), instruction, False, 0)]
        done = False
        while not done:
            out = policy.act(obs_to_torch(_batch_one(obs), device), deterministic=True)
            action = out.actions[0].cpu().numpy()
            obs, _, terminated, truncated, info = single.step(action)
            done = terminated or truncated
            frame = single.render()
            frames.append(
                annotate_frame(
                    frame, instruction, bool(info.get("success_once")), info.get("elapsed_steps", 0)
                )
            )
        fps = int(single.metadata.get("render_fps", 10)) // max(1, env.action_chunk)
        return write_video(path, frames, max(1, min(fps, 30)))
    finally:
        single.close()


def load_policy(
    path: str | Path,
    observation_space: gym.Space,
    action_space: gym.Space,
    device: torch.device,
    default_settings: dict[str, Any],
) -> ActorCriticPolicy:
    """A checkpoint's policy for these spaces, built with the settings the run trained with."""
    state = checkpoint.load(path, device)
    # The network must match the weights: use the policy settings the run trained with.
    settings = state.get("config", {}).get("policy", default_settings)
    policy = make_policy(settings, observation_space, action_space)
    policy.load_state_dict(checkpoint.policy_state(state))
    return policy.to(device)


def evaluate_generic(
    config: TrainConfig, checkpoint_path: str, episodes: int, device: torch.device
) -> dict[str, float]:
    """The generic loop: ``episodes`` deterministic episodes on the config's evaluation env."""
    collector = make_eval_collector(config, device)
    try:
        policy = load_policy(
            checkpoint_path,
            collector.observation_space,
            collector.action_space,
            device,
            config.policy,
        )
        stats = evaluate_policy(collector, policy, episodes, seed=config.runner.seed + 10_000_019)
    finally:
        collector.close()
    return stats.metrics("eval")


# ------------------------------------------------------------------------ benchmark protocols
@dataclass(frozen=True)
class Protocol:
    """One benchmark's evaluation protocol (``vla_gym.eval.<benchmark>``) on one suite."""

    benchmark: str  # a key of RUNNERS
    suite: str

    @property
    def name(self) -> str:
        return f"{self.benchmark}/{self.suite}"


def protocol_table() -> dict[str, Protocol]:
    """Evaluation env ID -> the protocol ``trainers eval`` runs for it (imports no simulator)."""
    from vla_gym.envs.calvin import IDS as CALVIN_IDS
    from vla_gym.envs.libero.suites import SUITES as LIBERO_SUITES
    from vla_gym.eval.metaworld import SUITE_IDS as METAWORLD_SUITE_IDS

    return {
        # CALVIN's protocol always runs in scene D (ABC->D recipes train elsewhere).
        **{env_id: Protocol("calvin", "D") for env_id in CALVIN_IDS},
        **{env_id: Protocol("metaworld", suite) for suite, env_id in METAWORLD_SUITE_IDS.items()},
        **{suite.env_id: Protocol("libero", name) for name, suite in LIBERO_SUITES.items()},
    }


def select_protocol(env_id: str, requested: str = "auto") -> Protocol | None:
    """The benchmark protocol for ``env_id``; None means the generic episode loop."""
    return protocol_table().get(env_id) if requested == "auto" else None


def trials_per_task(episodes: int, num_tasks: int, full: int) -> int:
    """Trials per task for an episode budget: every task at least once, at most ``full``."""
    return max(1, min(full, math.ceil(episodes / num_tasks)))


@dataclass
class ProtocolJob:
    """What every protocol runner needs: the config, the checkpoint and the episode budget."""

    config: TrainConfig
    checkpoint: str
    episodes: int
    device: torch.device

    @property
    def num_envs(self) -> int:
        return self.config.env.eval_num_envs or self.config.env.num_envs

    @property
    def seed(self) -> int:
        return self.config.runner.seed

    def env_kwargs(self, fixed: Iterable[str]) -> dict[str, Any]:
        """The config's observation/action settings and env kwargs, less what the protocol
        fixes (the horizon included: each runner sets it)."""
        kwargs = env_kwargs(self.config.env, evaluation=True)
        drop = {"max_episode_steps", *fixed}
        return {key: value for key, value in kwargs.items() if key not in drop}

    def policy_factory(self) -> Callable[[gym.vector.VectorEnv], Any]:
        """The checkpoint as a batch policy of the protocol's vector env (on the rollout
        device); the protocols' reports name the policy by the checkpoint path."""
        from vla_gym.eval.common import CheckpointPolicy

        def make(envs: gym.vector.VectorEnv) -> CheckpointPolicy:
            return CheckpointPolicy(self.checkpoint, envs, str(self.device))

        make.__name__ = self.checkpoint
        return make


Report = tuple[str, dict[str, float]]  # the protocol's report, the headline metrics


def _run_calvin(job: ProtocolJob, suite: str) -> Report:
    from vla_gym.eval import calvin

    result = calvin.evaluate(
        job.policy_factory(),
        num_sequences=min(job.episodes, calvin.NUM_SEQUENCES),
        num_envs=job.num_envs,
        backend=job.config.env.backend,
        seed=job.seed,
        progress=sys.stderr.isatty(),
        **job.env_kwargs(calvin._PROTOCOL_KWARGS),
    )
    metrics = {"eval/avg_len": result.avg_len, "eval/num_episodes": float(result.num_sequences)}
    for length, rate in enumerate(result.success_rates, start=1):
        metrics[f"eval/chain_success_{length}"] = rate  # P(at least `length` tasks in a row)
    return calvin.format_report(result), metrics


def _run_metaworld(job: ProtocolJob, suite: str) -> Report:
    from vla_gym.envs.metaworld.tasks import make_suite
    from vla_gym.eval import metaworld

    spec = make_suite(suite)
    result = metaworld.evaluate(
        job.policy_factory(),
        suite,
        num_envs=job.num_envs,
        num_trials=trials_per_task(job.episodes, len(spec.tasks), spec.num_trials),
        max_episode_steps=job.config.env.max_episode_steps,
        backend=job.config.env.backend,
        seed=job.seed,
        progress=sys.stderr.isatty(),
        **job.env_kwargs(metaworld._PROTOCOL_KWARGS),
    )
    metrics = {
        "eval/success": result.average,  # "Avg.": the mean of the difficulty buckets' means
        "eval/task_mean": result.task_mean,
        **{f"eval/{bucket}": value for bucket, value in result.buckets.items()},
        "eval/num_episodes": float(result.episodes),
    }
    return metaworld.format_report(result), metrics


LIBERO_INIT_STATES = 50  # recorded initial states per task (the protocol's trials)
_LIBERO_FIXED_KWARGS = ("suite", "task_id", "task_ids", "init_state_id", "max_steps")


def _run_libero(job: ProtocolJob, suite: str) -> Report:
    from vla_gym.envs.libero.suites import get_suite
    from vla_gym.eval import common, libero

    kwargs = {
        **job.env_kwargs(_LIBERO_FIXED_KWARGS),
        "max_steps": job.config.env.max_episode_steps,
    }
    # vla_gym.eval.libero takes a callable (obs, infos) -> actions, not a checkpoint path: the
    # policy is built on the spaces of one env, which also gives the number of tasks.
    probe = make_single_env(get_suite(suite).env_id, **kwargs)
    try:
        spaces = SimpleNamespace(
            single_observation_space=probe.observation_space,
            single_action_space=probe.action_space,
        )
        num_tasks = int(probe.unwrapped.num_tasks)
    finally:
        probe.close()
    policy = common.CheckpointPolicy(job.checkpoint, spaces, str(job.device))

    def act(obs: Any, infos: Any) -> np.ndarray:
        return policy.act(obs, infos)

    act.__name__ = job.checkpoint
    num_trials = trials_per_task(job.episodes, num_tasks, LIBERO_INIT_STATES)
    result = libero.evaluate(
        suite,
        act,
        num_trials=num_trials,
        num_envs=min(job.num_envs, num_tasks * num_trials),
        backend=job.config.env.backend,
        seed=job.seed,
        progress=sys.stderr.isatty(),
        **kwargs,
    )
    metrics = {"eval/success": result.success, "eval/num_episodes": float(len(result.trials))}
    return libero.format_report(result), metrics


RUNNERS: dict[str, Callable[[ProtocolJob, str], Report]] = {
    "calvin": _run_calvin,
    "metaworld": _run_metaworld,
    "libero": _run_libero,
}


def run_protocol(protocol: Protocol, job: ProtocolJob) -> Report:
    return RUNNERS[protocol.benchmark](job, protocol.suite)


# ------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument(
        "--episodes",
        type=int,
        default=0,
        help="episode budget (CALVIN: chains); default env.eval_episodes, capped at the "
        "protocol's full size",
    )
    parser.add_argument(
        "--protocol",
        default="auto",
        choices=["auto", "generic"],
        help="auto: the benchmark's protocol for the evaluation env ID when it has one; "
        "generic: N episodes on the evaluation env",
    )
    parser.add_argument("--video", default="", help="also write one episode to this mp4")


def _eval_spaces(env: EnvConfig) -> tuple[gym.Space, gym.Space]:
    single = make_single_env(env.eval_id or env.id, **env_kwargs(env, evaluation=True))
    try:
        return single.observation_space, single.action_space
    finally:
        single.close()


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    device = torch_device(config.cluster.component_placement.get("rollout", "cpu"))
    episodes = args.episodes or config.env.eval_episodes
    protocol = select_protocol(config.env.eval_id or config.env.id, args.protocol)
    if protocol is None:
        name, metrics = "generic", evaluate_generic(config, args.checkpoint, episodes, device)
    else:
        job = ProtocolJob(config, str(args.checkpoint), episodes, device)
        report, metrics = run_protocol(protocol, job)
        name = protocol.name
        print(report)
    print(json.dumps({"protocol": name, **{key: round(v, 4) for key, v in metrics.items()}}))
    if args.video:
        policy = load_policy(args.checkpoint, *_eval_spaces(config.env), device, config.policy)
        print(f"video: {record_video(config, policy, Path(args.video), device)}")
    return 0
