"""Evaluation: a checkpoint through ``vla_gym.eval``'s protocols, the trainer's validation loop
and annotated episode videos.

``python -m trainers eval --checkpoint PATH [--config NAME] [dotted.key=value ...]`` rebuilds
the policy and the env settings from the config stored in the checkpoint (``--config`` replaces
it) and runs :func:`vla_gym.eval.protocol_for` of the config's evaluation env
(``env.eval_id or env.id``): CALVIN's chains (avg_len), Meta-World's MT50/ML45 suites, LIBERO's
suites, or for any other ID (and with ``--protocol generic``) the generic protocol, ``N``
seeded episodes.

The size of a run is an episode budget, ``--episodes`` or else the config's
``env.eval_episodes``, which each protocol caps at its full size (CALVIN: chains; Meta-World and
LIBERO: spread over the suite's tasks). The env gets the config's observation/action settings
and env kwargs (``env.kwargs``, ``env.eval_kwargs``; horizon ``env.max_steps``) less
what the protocol sets itself. The output is the protocol's report followed by one JSON line of
the headline metrics (``{"protocol": ..., "eval/...": ...}``); ``--video PATH`` also renders one
episode on the evaluation env. ``--progress auto|on|off`` shows a progress bar with the running
success rate (auto: on a terminal outside CI), ``--results-jsonl PATH`` appends one JSON line per
finished task as the evaluation runs (see :mod:`vla_gym.eval.progress`), and ``--env-kwargs
MAPPING`` sets env kwargs (see :mod:`vla_gym.cli`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import vla_gym.eval
from trainers import checkpoint
from trainers.cli import mapping_overrides
from trainers.config import TrainConfig, config_from_dict, env_kwargs, load_config, vector_options
from trainers.placement import env_devices, torch_device
from trainers.policies import make_policy
from trainers.policies.base import ActorCriticPolicy
from trainers.rollout import (
    EpisodeStats,
    RolloutCollector,
    make_single_env,
    make_vector_env,
    obs_to_torch,
)
from trainers.tracking import annotate_frame, progress_bar_enabled, write_video
from vla_gym.cli import add_env_kwargs_flag, parse_mapping

# Validation episodes (the trainer's periodic evaluation, the generic protocol) use seeds from
# runner.seed + VALIDATION_SEED_OFFSET on: apart from the training rollouts' seeds.
VALIDATION_SEED_OFFSET = 10_000_019


def make_eval_collector(config: TrainConfig, device: torch.device) -> RolloutCollector:
    env = config.env
    kwargs = {**env_kwargs(env, evaluation=True), **vector_options(env)}
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
        num_steps=math.ceil(env.max_steps / env.action_chunk),
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
        total.merge(stats)
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


class EvalPolicy:
    """A trainer policy under ``vla_gym.eval``'s policy contract (deterministic actions)."""

    def __init__(self, policy: ActorCriticPolicy, device: torch.device) -> None:
        self.policy = policy.to(device).eval()
        self.device = device

    @torch.no_grad()
    def act(self, obs: Any, infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = self.policy.act(obs_to_torch(obs, self.device), deterministic=True)
        return out.actions.cpu().numpy()

    def episode_done(self, env_index: int) -> None:
        pass


def load_policy(
    state: Mapping[str, Any],
    observation_space: gym.Space,
    action_space: gym.Space,
    device: torch.device,
    settings: Mapping[str, Any],
) -> ActorCriticPolicy:
    """A loaded checkpoint's policy for these spaces, built with ``settings`` (policy config)."""
    policy = make_policy(dict(settings), observation_space, action_space)
    policy.load_state_dict(checkpoint.policy_state(state))
    return policy.to(device)


def checkpoint_config(
    state: Mapping[str, Any], path: str, config: str = "", overrides: Sequence[str] = ()
) -> TrainConfig:
    """The run's config: ``config`` (a name or YAML path) if given, else the checkpoint's own."""
    if config:
        return load_config(config, list(overrides))
    raw = checkpoint.run_config(state, path)
    # the weights come from this checkpoint, not from the run's starting point
    raw["runner"] = {**raw.get("runner", {}), "init_checkpoint_path": ""}
    return config_from_dict(raw, list(overrides))


def evaluate_checkpoint(
    path: str | Path,
    config: TrainConfig,
    *,
    episodes: int = 0,
    protocol: str = "auto",
    device: torch.device | None = None,
    state: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    results_path: str | Path | None = None,
) -> vla_gym.eval.EvalResult:
    """Run the evaluation protocol of ``config``'s evaluation env on a checkpoint (``state``:
    the checkpoint already loaded; ``progress``, ``results_path``: see
    :mod:`vla_gym.eval.progress`)."""
    env = config.env
    device = device or torch_device(config.cluster.component_placement.get("rollout", "cpu"))
    state = state if state is not None else checkpoint.load(path, "cpu")
    # The network must match the weights: the policy settings the run trained with.
    settings = state.get("config", {}).get("policy") or config.policy
    env_id = env.eval_id or env.id
    chosen = (
        vla_gym.eval.protocol_for(env_id)
        if protocol == "auto"
        else vla_gym.eval.generic_protocol(env_id)
    )

    def make(envs: gym.vector.VectorEnv) -> EvalPolicy:
        single = (envs.single_observation_space, envs.single_action_space)
        return EvalPolicy(load_policy(state, *single, device, settings), device)

    make.__name__ = str(path)  # reports name the policy by its checkpoint
    kwargs = env_kwargs(env, evaluation=True)
    kwargs = {**chosen.usable_kwargs(kwargs), **vector_options(env)}
    devices = env_devices(config.cluster.component_placement.get("env", "cpu"))
    if devices is not None:
        kwargs["devices"] = devices
    seed = config.runner.seed
    if chosen.benchmark == "generic":  # benchmark protocols fix their own trials
        seed += VALIDATION_SEED_OFFSET
        kwargs["episode_metrics"] = env.episode_metrics
    return chosen.run(
        make,
        episodes=episodes or env.eval_episodes,
        num_envs=env.eval_num_envs or env.num_envs,
        backend=env.backend,
        seed=seed,
        progress=progress,
        results_path=results_path,
        **kwargs,
    )


def headline_metrics(result: vla_gym.eval.EvalResult) -> dict[str, Any]:
    """The JSON line ``trainers eval`` prints: the protocol and its ``eval/*`` metrics."""
    metrics = {f"eval/{key}": round(value, 4) for key, value in result.metrics.items()}
    return {"protocol": result.protocol, **metrics, "eval/num_episodes": float(result.episodes)}


# ------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    parser.add_argument(
        "--config", default="", help="config name or YAML path (default: the checkpoint's own)"
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    add_env_kwargs_flag(parser)
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
        "generic: N seeded episodes on the evaluation env",
    )
    parser.add_argument("--video", default="", help="also write one episode to this mp4")
    parser.add_argument("--json", default="", help="also write the whole result as JSON here")
    parser.add_argument(
        "--progress",
        default="auto",
        choices=["auto", "on", "off"],
        help="progress bar on stderr (auto: on a terminal outside CI)",
    )
    parser.add_argument(
        "--results-jsonl",
        default=None,
        metavar="PATH",
        help="append one JSON line per finished task here as the evaluation runs",
    )


def _eval_spaces(config: TrainConfig) -> tuple[gym.Space, gym.Space]:
    env = config.env
    single = make_single_env(env.eval_id or env.id, **env_kwargs(env, evaluation=True))
    try:
        return single.observation_space, single.action_space
    finally:
        single.close()


def run(args: argparse.Namespace) -> int:
    state = checkpoint.load(args.checkpoint, "cpu")
    overrides = [*mapping_overrides(parse_mapping(args.env_kwargs)), *args.overrides]
    config = checkpoint_config(state, args.checkpoint, args.config, overrides)
    device = torch_device(config.cluster.component_placement.get("rollout", "cpu"))
    result = evaluate_checkpoint(
        args.checkpoint,
        config,
        episodes=args.episodes,
        protocol=args.protocol,
        device=device,
        state=state,
        progress=progress_bar_enabled(args.progress),
        results_path=args.results_jsonl,
    )
    print(result.report)
    print(json.dumps(headline_metrics(result)))
    if args.json:
        Path(args.json).write_text(result.to_json())
    if args.video:
        settings = state.get("config", {}).get("policy") or config.policy
        policy = load_policy(state, *_eval_spaces(config), device, settings)
        print(f"video: {record_video(config, policy, Path(args.video), device)}")
    return 0
