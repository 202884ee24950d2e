"""The training loop: collect rollouts, compute advantages (PPO or GRPO), update, log, save.

``python -m trainers train --config NAME [dotted.key=value ...] [--smoke]
[--resume [PATH] | --resume-if-present]``

A run survives what it can: a crashed or hung env worker is replaced (``env.restart_on_failure``,
``env.step_timeout``), and any exit that can still write a checkpoint (an exception, Ctrl-C,
SIGTERM) writes one, so ``--resume`` continues at the last finished iteration.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from trainers import checkpoint
from trainers.algorithms import grpo, ppo
from trainers.config import TrainConfig, load_config
from trainers.evaluate import evaluate_policy, make_eval_collector, record_video
from trainers.logging import MetricLogger, ProgressBar, progress_bar_enabled
from trainers.placement import env_devices, torch_device
from trainers.policies import make_policy
from trainers.rollout import (
    EpisodeStats,
    Rollout,
    RolloutCollector,
    concat_obs,
    env_kwargs,
    flatten_obs,
    index_obs,
    make_vector_env,
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _flat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``(T, N, ...)`` tensors of several rollouts -> one ``(sum T * N, ...)`` tensor."""
    return torch.cat([part.reshape(-1, *part.shape[2:]) for part in parts])


def run_dir_of(config: TrainConfig) -> Path:
    return Path(config.runner.log_dir) / (config.runner.run_name or config.name)


class Trainer:
    def __init__(
        self, config: TrainConfig, *, resume: bool | str = False, resume_if_present: bool = False
    ) -> None:
        """``resume``: ``True`` continues from the run's latest checkpoint, a path from that
        checkpoint; either must exist. ``resume_if_present``: the latest checkpoint if there is
        one, else a new run."""
        self.config = config
        self.run_dir = run_dir_of(config)
        self._remove_unfinished_checkpoints()
        # checked before any env is built: a missing checkpoint fails at once
        self.resumed_from = self._resume_path(resume, resume_if_present)
        placement = config.cluster.component_placement
        self.actor_device = torch_device(placement.get("actor", "cpu"))
        self.rollout_device = torch_device(placement.get("rollout", "cpu"))
        seed_everything(config.runner.seed)
        if config.runner.torch_threads:
            torch.set_num_threads(config.runner.torch_threads)
        env = config.env
        kwargs = env_kwargs(env)
        devices = env_devices(placement.get("env", "cpu"))
        # make_vec takes the vector-env settings alongside the env kwargs
        vector_kwargs = {
            **kwargs,
            "restart_on_failure": env.restart_on_failure,
            "step_timeout": env.step_timeout,
        }
        self.collector = RolloutCollector(
            lambda n: make_vector_env(
                env.id,
                n,
                vector_kwargs,
                backend=env.backend,
                devices=devices,
                envs_per_worker=env.envs_per_worker,
            ),
            env.num_envs,
            num_steps=config.steps_per_rollout,
            episodic=config.rollout.episodic,
            pipeline_stage_num=config.rollout.pipeline_stage_num,
            device=self.rollout_device,
            episode_metrics=env.episode_metrics,
        )
        self.policy = make_policy(
            config.policy, self.collector.observation_space, self.collector.action_space
        ).to(self.actor_device)
        # A separate rollout copy only when rollout and actor live on different devices.
        self.rollout_policy = (
            self.policy
            if self.rollout_device == self.actor_device
            else copy.deepcopy(self.policy).to(self.rollout_device)
        )
        self.optimizer = ppo.make_optimizer(self.policy, config.algorithm)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(config.runner.seed)
        self.iteration = 0
        self.env_steps = 0
        self.elapsed = 0.0
        self.eval_collector: RolloutCollector | None = None
        if config.runner.init_checkpoint_path:
            state = checkpoint.load(config.runner.init_checkpoint_path, self.actor_device)
            self.policy.load_state_dict(checkpoint.policy_state(state))
        if self.resumed_from is not None:
            self._restore(checkpoint.load(self.resumed_from, self.actor_device))
        resumed = self.resumed_from is not None
        self._saved_iteration = self.iteration  # the latest checkpoint holds this iteration
        self._consistent = True  # False while an update is half-applied (not worth saving)
        self._sync_rollout_policy()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.logger = MetricLogger(
            self.run_dir,
            loggers=config.runner.loggers,
            purge_step=self.env_steps + 1 if resumed else None,
            config=config.to_dict(),
            run_name=config.runner.run_name or config.name,
            wandb_project=config.runner.wandb_project,
            resume=resumed,
        )

    # ---------------------------------------------------------------------------- state
    @property
    def latest_path(self) -> Path:
        return self.run_dir / "checkpoints" / checkpoint.LATEST

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "elapsed": self.elapsed,
            "rng": checkpoint.rng_state(),
            "generator": self.generator.get_state(),
            "config": self.config.to_dict(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.elapsed = float(state["elapsed"])
        checkpoint.restore_rng(state["rng"])
        self.generator.set_state(state["generator"])

    def save(self) -> Path:
        path = checkpoint.save_atomic(self.state_dict(), self.latest_path)
        self._saved_iteration = self.iteration
        return path

    def _resume_path(self, resume: bool | str, resume_if_present: bool) -> Path | None:
        """The checkpoint to resume from, or None for a new run."""
        if resume and resume_if_present:
            raise ValueError("give resume or resume_if_present, not both")
        if not resume and not resume_if_present:
            return None
        path = Path(resume) if isinstance(resume, str | Path) else self.latest_path
        if path.is_file():
            return path
        if resume_if_present:
            return None
        raise FileNotFoundError(
            f"--resume: there is no checkpoint {str(path)!r} to resume from; start a new run "
            "without --resume, or pass --resume-if-present"
        )

    def _remove_unfinished_checkpoints(self) -> None:
        """Temporary files of a save cut short (the process was killed while writing)."""
        folder = self.run_dir / "checkpoints"
        for unfinished in folder.glob(f".{checkpoint.LATEST}.*.tmp"):
            unfinished.unlink(missing_ok=True)

    def _save_on_exit(self, reason: BaseException) -> None:
        """Training stops on ``reason``: keep the finished iterations (unless the latest
        checkpoint already holds them, or an update was cut halfway)."""
        if not self._consistent or self.iteration <= self._saved_iteration:
            return
        try:
            path = self.save()
        except Exception as error:  # the original failure is the one to report
            print(f"could not write a checkpoint on exit: {error}", file=sys.stderr)
            return
        what = type(reason).__name__
        print(
            f"stopped by {what} during iteration {self.iteration + 1}: saved iteration "
            f"{self.iteration} to {path}; continue with --resume",
            file=sys.stderr,
        )

    def _sync_rollout_policy(self) -> None:
        """Weights actor -> rollout copy (after an update)."""
        if self.rollout_policy is not self.policy:
            self.rollout_policy.load_state_dict(self.policy.state_dict())

    def _sync_rollout_buffers(self) -> None:
        """Buffers rollout copy -> actor (after a rollout): e.g. observation statistics that
        the policy updates while acting."""
        if self.rollout_policy is not self.policy:
            actor_buffers = dict(self.policy.named_buffers())
            for name, buffer in self.rollout_policy.named_buffers():
                actor_buffers[name].copy_(buffer)

    # ------------------------------------------------------------------------ training
    def _rollout_seeds(self, rollout_index: int) -> list[int]:
        config = self.config
        num_envs = config.env.num_envs
        base = config.runner.seed * 1_000_003 + rollout_index * num_envs
        if config.algorithm.name == "grpo":
            return grpo.group_seeds(base, num_envs, config.algorithm.group_size)
        return [base + i for i in range(num_envs)]  # continuous rollouts use them once

    def _collect(self) -> tuple[list[Rollout], EpisodeStats]:
        rollouts, stats = [], EpisodeStats()
        epochs = self.config.rollout.rollout_epochs
        self.rollout_policy.train()
        for epoch in range(epochs):
            rollout, part = self.collector.collect(
                self.rollout_policy, self._rollout_seeds(self.iteration * epochs + epoch)
            )
            rollouts.append(rollout)
            stats.returns += part.returns
            stats.lengths += part.lengths
            stats.success_once += part.success_once
            for key, values in part.extra.items():
                stats.extra[key] += values
            stats.env_steps += part.env_steps
            stats.reward_sum += part.reward_sum
        return rollouts, stats

    def _make_batch(self, rollouts: list[Rollout]) -> tuple[ppo.Batch, dict[str, float]]:
        algo = self.config.algorithm
        use_value = algo.name == "ppo"
        advantages, returns, masks, metrics = [], [], [], {}
        for rollout in rollouts:
            if use_value:
                adv, ret = ppo.ppo_advantages(rollout, algo)
                mask = rollout.valid
            else:
                adv, mask, metrics = grpo.grpo_advantages(rollout, algo)
                ret = adv
            advantages.append(adv.reshape(-1))
            returns.append(ret.reshape(-1))
            masks.append(mask.reshape(-1))
        advantages_flat, returns_flat = torch.cat(advantages), torch.cat(returns)
        mask = torch.cat(masks)
        values = torch.cat([r.values.reshape(-1) for r in rollouts])
        valid = torch.cat([r.valid.reshape(-1) for r in rollouts])
        rewards = torch.cat([ppo.bootstrap_truncated(r, algo.gamma).reshape(-1) for r in rollouts])
        if algo.normalize_advantages:
            advantages_flat = ppo.normalize(advantages_flat, mask)
        index = torch.nonzero(mask).squeeze(-1)
        if index.numel() == 0:
            index = torch.zeros(0, dtype=torch.long)
        obs = concat_obs([flatten_obs(r.obs) for r in rollouts], dim=0)
        extras = {key: _flat([r.extras[key] for r in rollouts]) for key in rollouts[0].extras}
        batch = ppo.Batch(
            obs=index_obs(obs, index),
            actions=_flat([r.actions for r in rollouts])[index],
            log_probs=_flat([r.log_probs for r in rollouts])[index],
            advantages=advantages_flat[index],
            returns=returns_flat[index] if use_value else None,
            values=values[index] if use_value else None,
            extras={key: value[index] for key, value in extras.items()},
        )
        selected = advantages_flat[mask]
        metrics.update(
            {
                "rollout/rewards": float(rewards[valid].mean()) if valid.any() else float("nan"),
                "rollout/advantages_mean": float(selected.mean()) if selected.numel() else 0.0,
                "rollout/advantages_max": float(selected.max()) if selected.numel() else 0.0,
                "rollout/advantages_min": float(selected.min()) if selected.numel() else 0.0,
                "rollout/num_samples": float(index.numel()),
            }
        )
        if use_value:
            metrics["rollout/returns_mean"] = float(returns_flat[valid].mean())
            metrics["critic/explained_variance"] = ppo.explained_variance(
                values[valid], returns_flat[valid]
            )
        return batch, metrics

    def train_iteration(self) -> dict[str, float]:
        start = time.perf_counter()
        timings = self.collector.timings
        timings.env_step = timings.policy_inference = 0.0
        rollouts, stats = self._collect()
        self._sync_rollout_buffers()
        rollout_time = time.perf_counter() - start
        batch, metrics = self._make_batch(rollouts)
        del rollouts
        algo = self.config.algorithm
        use_value = algo.name == "ppo"
        train_actor = not use_value or self.iteration >= algo.critic_warmup_iterations
        if algo.anneal_lr:
            remaining = max(0.0, 1.0 - self.iteration / self.config.runner.max_iterations)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * remaining
        self._consistent = False
        if batch.size > 0:
            metrics.update(
                ppo.update(
                    self.policy,
                    self.optimizer,
                    batch,
                    algo,
                    self.actor_device,
                    use_value=use_value,
                    train_actor=train_actor,
                    generator=self.generator,
                )
            )
            metrics["actor/critic_warmup"] = float(not train_actor)
        self._sync_rollout_policy()
        self.iteration += 1
        self.env_steps += stats.env_steps
        self._consistent = True
        iteration_time = time.perf_counter() - start
        self.elapsed += iteration_time
        metrics.update(stats.metrics("env"))
        metrics.update(
            {
                "time/rollout": rollout_time,
                "time/env_step": timings.env_step,
                "time/policy_inference": timings.policy_inference,
                "time/iteration": iteration_time,
                "time/elapsed": self.elapsed,
                "time/env_steps_per_second": stats.env_steps / max(iteration_time, 1e-9),
                "train/iteration": float(self.iteration),
                "train/env_steps": float(self.env_steps),
            }
        )
        return metrics

    def evaluate(self) -> dict[str, float]:
        if self.eval_collector is None:
            self.eval_collector = make_eval_collector(self.config, self.rollout_device)
        start = time.perf_counter()
        stats = evaluate_policy(
            self.eval_collector,
            self.rollout_policy,
            self.config.env.eval_episodes,
            seed=self.config.runner.seed + 10_000_019,
        )
        self.rollout_policy.train()
        return {**stats.metrics("eval"), "time/eval": time.perf_counter() - start}

    def _done(self) -> bool:
        runner = self.config.runner
        if self.iteration >= runner.max_iterations:
            return True
        return bool(runner.max_env_steps) and self.env_steps >= runner.max_env_steps

    def train(self) -> dict[str, float]:
        runner = self.config.runner
        bar = ProgressBar(
            progress_bar_enabled(runner.progress_bar), runner.max_iterations, self.iteration
        )
        metrics: dict[str, float] = {}
        try:
            with _sigterm_as_exit():
                while not self._done():
                    metrics = self._iterate()
                    bar.update(metrics)
        except BaseException as reason:  # an env crash, Ctrl-C, SIGTERM, ...
            self._save_on_exit(reason)
            raise
        finally:
            bar.close()
            self.logger.close()
            self.collector.close()
            if self.eval_collector is not None:
                self.eval_collector.close()
        return metrics

    def _iterate(self) -> dict[str, float]:
        """One iteration with its evaluation, video, metrics and checkpoint as configured."""
        runner = self.config.runner
        metrics = self.train_iteration()
        if runner.eval_interval and self.iteration % runner.eval_interval == 0:
            metrics.update(self.evaluate())
        if runner.video_interval and self.iteration % runner.video_interval == 0:
            start = time.perf_counter()
            path = self.run_dir / "videos" / f"iter_{self.iteration:06d}.mp4"
            record_video(self.config, self.rollout_policy, path, self.rollout_device)
            self.rollout_policy.train()
            metrics["time/video"] = time.perf_counter() - start
        # Metrics reach the disk before the checkpoint: a kill in between resumes from
        # the previous checkpoint, whose purge_step hides them (no gap, no duplicate).
        self.logger.log(metrics, step=self.env_steps)
        self.logger.flush()
        if self.iteration % runner.save_interval == 0 or self._done():
            start = time.perf_counter()
            self.save()
            saved = {"time/checkpoint": time.perf_counter() - start}
            self.logger.log(saved, step=self.env_steps)
            metrics.update(saved)
        return metrics


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM (``kill``, a job scheduler's stop) ends training as Ctrl-C does, through the
    exit checkpoint and the clean-up, with exit status 143 (128 + SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------- the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    parser.add_argument("--smoke", action="store_true", help="two tiny iterations")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the run's latest checkpoint (or from PATH); fails if there is none",
    )
    resume.add_argument(
        "--resume-if-present",
        action="store_true",
        help="continue from the run's latest checkpoint if there is one, else start a new run",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, smoke=args.smoke)
    try:
        trainer = Trainer(config, resume=args.resume, resume_if_present=args.resume_if_present)
    except FileNotFoundError as error:  # a checkpoint to resume or start from is missing
        print(f"error: {error}", file=sys.stderr)
        return 2
    if trainer.resumed_from is not None:
        print(
            f"resumed from {trainer.resumed_from}: iteration {trainer.iteration}, "
            f"env steps {trainer.env_steps}"
        )
    elif args.resume_if_present:
        print(f"no checkpoint at {trainer.latest_path}: starting a new run")
    print(f"training {config.name}: run dir {trainer.run_dir}, from iteration {trainer.iteration}")
    try:
        metrics = trainer.train()
    except KeyboardInterrupt:
        print(f"interrupted at iteration {trainer.iteration}", file=sys.stderr)
        return 130
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("env/", "eval/"))}
    print(f"done: iteration {trainer.iteration}, env steps {trainer.env_steps}, {shown}")
    return 0
