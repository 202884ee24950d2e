"""Evaluation (deterministic policy, whole episodes) and annotated episode videos.

``python -m trainers eval --config NAME --checkpoint PATH [dotted.key=value ...]`` evaluates a
checkpoint on the config's evaluation env (``env.eval_id``/``env.eval_kwargs``, e.g. CALVIN
scene D) for ``env.eval_episodes`` episodes and prints the ``eval/*`` metrics.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from trainers import checkpoint
from trainers.config import TrainConfig, load_config
from trainers.logging import annotate_frame, write_video
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


def make_eval_collector(config: TrainConfig, device: torch.device) -> RolloutCollector:
    env = config.env
    kwargs = env_kwargs(env, evaluation=True)
    devices = env_devices(config.cluster.component_placement.get("env", "cpu"))
    env_id = env.eval_id or env.id
    return RolloutCollector(
        lambda n: make_vector_env(env_id, n, kwargs, backend=env.backend, devices=devices),
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--episodes", type=int, default=0, help="default: env.eval_episodes")
    parser.add_argument("--video", default="", help="also write one episode to this mp4")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    device = torch_device(config.cluster.component_placement.get("rollout", "cpu"))
    collector = make_eval_collector(config, device)
    try:
        state = checkpoint.load(args.checkpoint, device)
        # The network must match the weights: use the policy settings the run trained with.
        settings = state.get("config", {}).get("policy", config.policy)
        policy = make_policy(settings, collector.observation_space, collector.action_space)
        policy.load_state_dict(checkpoint.policy_state(state))
        policy.to(device)
        episodes = args.episodes or config.env.eval_episodes
        stats = evaluate_policy(collector, policy, episodes, seed=config.runner.seed + 10_000_019)
    finally:
        collector.close()
    metrics = stats.metrics("eval")
    print(json.dumps({key: round(value, 4) for key, value in metrics.items()}, indent=1))
    if args.video:
        print(f"video: {record_video(config, policy, Path(args.video), device)}")
    return 0
