"""The training loop: collect rollouts, compute the algorithm's advantages, update, log, save.

``python -m trainers train --config NAME [dotted.key=value ...] [--smoke] [--resume [PATH]]``
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from trainers import checkpoint, distributed
from trainers.algorithms import make_algorithm
from trainers.algorithms.update import make_batch, make_optimizer, update
from trainers.cli import add_env_kwargs_flag, mapping_overrides, parse_mapping
from trainers.config import TrainConfig, env_kwargs, load_config, validate_ranks
from trainers.evaluate import (
    VALIDATION_SEED_OFFSET,
    evaluate_policy,
    make_eval_collector,
    record_video,
)
from trainers.placement import env_devices, torch_device
from trainers.policies import make_policy
from trainers.rollout import EpisodeStats, Rollout, RolloutCollector, make_vector_env
from trainers.tracking import MetricLogger, ProgressBar, progress_bar_enabled


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_dir_of(config: TrainConfig) -> Path:
    return Path(config.runner.log_dir) / (config.runner.run_name or config.name)


class Trainer:
    def __init__(self, config: TrainConfig, *, resume: bool | str = False) -> None:
        self.config = config
        self.run_dir = run_dir_of(config)
        placement = distributed.rank_placement(
            config.cluster.component_placement,
            distributed.local_rank(),
            distributed.launched_ranks(),
        )
        self.actor_device = torch_device(placement.get("actor", "cpu"))
        self.rollout_device = torch_device(placement.get("rollout", "cpu"))
        distributed.init(self.actor_device)  # with torchrun: this process is one of the ranks
        self.is_main = distributed.is_main()
        # this rank's envs: its share of the global env.num_envs
        validate_ranks(config, distributed.world_size())
        self.env_offset, num_envs = distributed.rank_envs(config.env.num_envs)
        seed_everything(distributed.rank_seed(config.runner.seed))
        if config.runner.torch_threads:
            torch.set_num_threads(config.runner.torch_threads)
        env = config.env
        kwargs = env_kwargs(env)
        devices = env_devices(placement.get("env", "cpu"))
        self.collector = RolloutCollector(
            lambda n: make_vector_env(
                env.id,
                n,
                kwargs,
                backend=env.backend,
                devices=devices,
                envs_per_worker=env.envs_per_worker,
            ),
            num_envs,
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
        self.algorithm = make_algorithm(config.algorithm)
        self.optimizer = make_optimizer(self.policy, config.algorithm)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        # the same on every rank: all ranks draw the same minibatch permutation
        self.generator = torch.Generator().manual_seed(config.runner.seed)
        self.rank_rngs: list[dict[str, Any]] = []  # every rank's RNG state after an iteration
        self.iteration = 0
        self.env_steps = 0
        self.elapsed = 0.0
        self.eval_collector: RolloutCollector | None = None
        self.best: dict[str, float] = {}  # the best validation score so far (best.pt)
        if config.runner.init_checkpoint_path:
            state = checkpoint.load(config.runner.init_checkpoint_path, self.actor_device)
            self.policy.load_state_dict(checkpoint.policy_state(state))
        resumed = False
        if resume:
            path = self.latest_path if resume is True else Path(resume)
            if path.is_file():
                self._restore(checkpoint.load(path, self.actor_device))
                resumed = True
            elif resume is not True:
                raise FileNotFoundError(f"--resume: checkpoint {str(path)!r} does not exist")
        if len(set(distributed.all_gather_object(resumed))) > 1:
            raise checkpoint.CheckpointError(
                f"--resume: {str(self.latest_path)!r} exists on some ranks only; put "
                "runner.log_dir on a filesystem every node shares (or pass --resume PATH)"
            )
        distributed.broadcast_module(self.policy)  # rank 0's initial weights everywhere
        self._sync_rollout_policy()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_text = yaml.safe_dump(config.to_dict(), sort_keys=False)
            (self.run_dir / "config.yaml").write_text(config_text)
        self.logger = MetricLogger(
            self.run_dir,
            loggers=config.runner.loggers if self.is_main else [],
            purge_step=self.env_steps + 1 if resumed else None,
            config=config.to_dict(),
            run_name=config.runner.run_name or config.name,
            wandb_project=config.runner.wandb_project,
        )

    # ---------------------------------------------------------------------------- state
    @property
    def latest_path(self) -> Path:
        return self.run_dir / "checkpoints" / checkpoint.LATEST

    def state_dict(self) -> dict[str, Any]:
        rng = checkpoint.rng_state()
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "elapsed": self.elapsed,
            "rng": rng,
            "generator": self.generator.get_state(),
            "best": dict(self.best),
            "config": self.config.to_dict(),
            "world_size": distributed.world_size(),
            # rank r resumes with rank_rng[r] (rank 0's is "rng")
            **({"rank_rng": [rng, *self.rank_rngs[1:]]} if self.rank_rngs else {}),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        ranks, saved = distributed.world_size(), int(state.get("world_size", 1))
        if saved != ranks:
            raise checkpoint.CheckpointError(
                f"the checkpoint was written by a run with {saved} rank(s); resume it with "
                f"{saved} (torchrun --nproc-per-node/--nnodes), not {ranks}"
            )
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.elapsed = float(state["elapsed"])
        if ranks == 1:
            checkpoint.restore_rng(state["rng"])
        elif "rank_rng" in state:  # each rank continues its own random streams
            checkpoint.restore_rng(state["rank_rng"][distributed.rank()])
        self.generator.set_state(state["generator"])
        self.best = dict(state.get("best", {}))

    def save(self, numbered: bool = False) -> Path | None:
        """``latest.pt``; with ``numbered`` also ``iter_NNNNNN.pt`` (the same file). Rank 0
        writes; the other ranks return None."""
        if not self.is_main:
            return None
        if not numbered:
            return checkpoint.save_atomic(self.state_dict(), self.latest_path)
        path = self.latest_path.with_name(checkpoint.numbered_name(self.iteration))
        checkpoint.save_atomic(self.state_dict(), path)
        return checkpoint.link_atomic(path, self.latest_path)

    def save_if_best(self, metrics: dict[str, float]) -> bool:
        """Write ``best.pt`` when ``runner.best_metric`` beats every earlier evaluation."""
        runner = self.config.runner
        value = metrics.get(runner.best_metric)
        if value is None or not np.isfinite(value):
            return False
        previous = self.best.get("value")
        sign = 1.0 if runner.best_mode == "max" else -1.0
        if previous is not None and sign * value <= sign * previous:
            return False
        self.best = {"value": float(value), "iteration": self.iteration}
        checkpoint.save_atomic(self.state_dict(), self.latest_path.with_name(checkpoint.BEST))
        return True

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
    def _collect(self) -> tuple[list[Rollout], EpisodeStats]:
        rollouts, stats = [], EpisodeStats()
        config = self.config
        epochs = config.rollout.rollout_epochs
        self.rollout_policy.train()
        for epoch in range(epochs):
            rollout_index = self.iteration * epochs + epoch
            base_seed = config.runner.seed * 1_000_003 + rollout_index * config.env.num_envs
            # this rank's envs get the seeds one process would give them (GRPO groups included)
            seeds = self.algorithm.reset_seeds(base_seed, config.env.num_envs)
            seeds = seeds[self.env_offset : self.env_offset + self.collector.num_envs]
            rollout, part = self.collector.collect(self.rollout_policy, seeds)
            rollouts.append(rollout)
            stats.merge(part)
        return rollouts, stats

    def train_iteration(self) -> dict[str, float]:
        start = time.perf_counter()
        timings = self.collector.timings
        timings.env_step = timings.policy_inference = 0.0
        rollouts, stats = self._collect()
        self._sync_rollout_buffers()
        rollout_time = time.perf_counter() - start
        batch, metrics = make_batch(rollouts, self.algorithm)
        metrics = distributed.reduce_metrics(metrics)
        del rollouts
        train_actor = self.algorithm.trains_actor(self.iteration)
        if self.config.algorithm.anneal_lr:
            remaining = max(0.0, 1.0 - self.iteration / self.config.runner.max_iterations)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * remaining
        if distributed.total(batch.size) > 0:
            metrics.update(
                update(
                    self.algorithm,
                    self.policy,
                    self.optimizer,
                    batch,
                    self.actor_device,
                    train_actor=train_actor,
                    generator=self.generator,
                )
            )
            metrics["actor/critic_warmup"] = float(not train_actor)
        self._sync_rollout_policy()
        stats = distributed.gather_stats(stats)
        if distributed.world_size() > 1:
            self.rank_rngs = distributed.all_gather_object(checkpoint.rng_state())
        self.iteration += 1
        self.env_steps += stats.env_steps
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
        """Validation episodes on rank 0 (the other ranks return no metrics)."""
        if not self.is_main:
            return {}
        if self.eval_collector is None:
            self.eval_collector = make_eval_collector(self.config, self.rollout_device)
        start = time.perf_counter()
        stats = evaluate_policy(
            self.eval_collector,
            self.rollout_policy,
            self.config.env.eval_episodes,
            seed=self.config.runner.seed + VALIDATION_SEED_OFFSET,
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
            self.is_main and progress_bar_enabled(runner.progress_bar),
            runner.max_iterations,
            self.iteration,
        )
        metrics: dict[str, float] = {}
        try:
            while not self._done():
                metrics = self.train_iteration()
                evaluated = runner.eval_interval and self.iteration % runner.eval_interval == 0
                if evaluated:
                    metrics.update(self.evaluate())
                video = runner.video_interval and self.iteration % runner.video_interval == 0
                if video and self.is_main:
                    start = time.perf_counter()
                    path = self.run_dir / "videos" / f"iter_{self.iteration:06d}.mp4"
                    record_video(self.config, self.rollout_policy, path, self.rollout_device)
                    self.logger.log_video("eval/video", path, step=self.env_steps)
                    self.rollout_policy.train()
                    metrics["time/video"] = time.perf_counter() - start
                # Metrics reach the disk before the checkpoint: a kill in between resumes from
                # the previous checkpoint, whose purge_step hides them (no gap, no duplicate).
                self.logger.log(metrics, step=self.env_steps)
                self.logger.flush()
                if evaluated:
                    self.save_if_best(metrics)
                numbered = self.iteration % runner.save_interval == 0
                if numbered or self._done():
                    start = time.perf_counter()
                    self.save(numbered=numbered)
                    saved = {"time/checkpoint": time.perf_counter() - start}
                    self.logger.log(saved, step=self.env_steps)
                    metrics.update(saved)
                bar.update(metrics)
        finally:
            bar.close()
            self.logger.close()
            self.collector.close()
            if self.eval_collector is not None:
                self.eval_collector.close()
        return metrics


# ---------------------------------------------------------------------------------- the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument(
        "overrides", nargs="*", help="dotted.key=value overrides, e.g. env.kwargs.image_size=64"
    )
    add_env_kwargs_flag(parser)
    parser.add_argument("--smoke", action="store_true", help="two tiny iterations")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the run's latest checkpoint (or from PATH)",
    )


def run(args: argparse.Namespace) -> int:
    overrides = [*mapping_overrides(parse_mapping(args.env_kwargs)), *args.overrides]
    config = load_config(args.config, overrides, smoke=args.smoke)
    try:
        trainer = Trainer(config, resume=args.resume)
        if trainer.is_main:
            ranks = f", {distributed.world_size()} ranks" if distributed.world_size() > 1 else ""
            print(
                f"training {config.name}: run dir {trainer.run_dir}, "
                f"from iteration {trainer.iteration}{ranks}"
            )
        metrics = trainer.train()
    finally:
        distributed.shutdown()
    if trainer.is_main:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("env/", "eval/"))}
        print(f"done: iteration {trainer.iteration}, env steps {trainer.env_steps}, {shown}")
    return 0
