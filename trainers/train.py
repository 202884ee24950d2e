"""The training loop: collect rollouts, compute the algorithm's advantages, update, log, save.

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

from trainers import checkpoint, distributed
from trainers.algorithms import make_algorithm
from trainers.algorithms.update import make_batch, make_optimizer, update
from trainers.cli import mapping_overrides
from trainers.config import TrainConfig, env_kwargs, load_config, validate_ranks, vector_options
from trainers.datasets import load_demos
from trainers.evaluate import (
    VALIDATION_SEED_OFFSET,
    evaluate_policy,
    make_eval_collector,
    record_video,
)
from trainers.placement import env_devices, torch_device
from trainers.policies import make_policy
from trainers.rollout import EpisodeStats, Rollout, RolloutCollector, make_vector_env
from trainers.schema import check
from trainers.sft import demo_batches
from trainers.tracking import MetricLogger, ProgressBar, progress_bar_enabled
from vla_gym.cli import add_env_kwargs_flag, parse_mapping


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        # the demonstrations of the behaviour-cloning term (algorithm.sft_coef), also at once
        algorithm = config.algorithm
        demos = None
        if algorithm.sft_coef > 0:
            check(
                bool(algorithm.sft_demos),
                "algorithm.sft_coef > 0 needs algorithm.sft_demos (the demonstrations to clone)",
            )
            demos = load_demos(algorithm.sft_demos)
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
        # make_vec takes the vector-env settings alongside the env kwargs
        vector_kwargs = {**kwargs, **vector_options(env)}
        self.collector = RolloutCollector(
            lambda n: make_vector_env(
                env.id,
                n,
                vector_kwargs,
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
        if self.resumed_from is not None:
            self._restore(checkpoint.load(self.resumed_from, self.actor_device))
        resumed = self.resumed_from is not None
        if len(set(distributed.all_gather_object(resumed))) > 1:
            raise checkpoint.CheckpointError(
                f"--resume: {str(self.latest_path)!r} exists on some ranks only; put "
                "runner.log_dir on a filesystem every node shares (or pass --resume PATH)"
            )
        distributed.broadcast_module(self.policy)  # rank 0's initial weights everywhere
        self.demos = None
        if demos is not None:
            self.demos = demo_batches(
                demos,
                self.collector.action_space,
                algorithm.sft_batch_size,
                # per rank, and a resumed run draws a fresh order
                seed=distributed.rank_seed(config.runner.seed) + self.iteration,
            )
        self._saved_iteration = self.iteration  # the latest checkpoint holds this iteration
        self._consistent = True  # False while an update is half-applied (not worth saving)
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
        self._saved_iteration = self.iteration
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
        if path is None:  # not rank 0
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
        scale = self.config.algorithm.lr_scale(self.iteration, self.config.runner.max_iterations)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale
        self._consistent = False
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
                    demos=self.demos,
                )
            )
            metrics["actor/critic_warmup"] = float(not train_actor)
        self._sync_rollout_policy()
        stats = distributed.gather_stats(stats)
        if distributed.world_size() > 1:
            self.rank_rngs = distributed.all_gather_object(checkpoint.rng_state())
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
    parser.add_argument(
        "overrides", nargs="*", help="dotted.key=value overrides, e.g. env.kwargs.image_size=64"
    )
    add_env_kwargs_flag(parser)
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
    overrides = [*mapping_overrides(parse_mapping(args.env_kwargs)), *args.overrides]
    config = load_config(args.config, overrides, smoke=args.smoke)
    try:
        try:
            trainer = Trainer(config, resume=args.resume, resume_if_present=args.resume_if_present)
        except FileNotFoundError as error:  # a checkpoint to resume or start from is missing
            print(f"error: {error}", file=sys.stderr)
            return 2
        if trainer.is_main:
            if trainer.resumed_from is not None:
                print(
                    f"resumed from {trainer.resumed_from}: iteration {trainer.iteration}, "
                    f"env steps {trainer.env_steps}"
                )
            elif args.resume_if_present:
                print(f"no checkpoint at {trainer.latest_path}: starting a new run")
            ranks = f", {distributed.world_size()} ranks" if distributed.world_size() > 1 else ""
            print(
                f"training {config.name}: run dir {trainer.run_dir}, "
                f"from iteration {trainer.iteration}{ranks}"
            )
        try:
            metrics = trainer.train()
        except KeyboardInterrupt:
            print(f"interrupted at iteration {trainer.iteration}", file=sys.stderr)
            return 130
    finally:
        distributed.shutdown()
    if trainer.is_main:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("env/", "eval/"))}
        print(f"done: iteration {trainer.iteration}, env steps {trainer.env_steps}, {shown}")
    return 0
