"""Supervised fine-tuning (SFT) on demonstrations, with periodic success evaluation.

    python -m trainers sft --config flow_panda_vision_ppo --demos demos/panda --steps 2000
    python -m trainers sft --config flow_panda_vision_ppo --demos my_lerobot_dataset \
        --lerobot-camera front=observation.images.top
    python -m trainers train --config flow_panda_vision_ppo \
        runner.init_checkpoint_path=runs/flow_panda_vision_ppo_sft/checkpoints/latest.pt

The policy and env come from a trainer config (so the SFT checkpoint loads straight into the RL
run); the SFT settings are flags. Training is generic over policies: it minimises the policy's
own ``sft_loss(obs, actions)`` (flow matching for the flow VLA, cross-entropy over action tokens
for the token VLA). Evaluation runs the deterministic policy on held-out seeds of the config's
evaluation env. Checkpoints (trainer format: ``{"policy": state_dict, ...}``) are written
atomically every ``--save-interval`` steps; ``--resume`` continues from the latest one.
``--demos`` is a native demo directory or a local LeRobotDataset (``trainers/lerobot_dataset.py``
documents the key mapping). Metrics go where the config's ``runner.loggers`` say (TensorBoard in
``<run dir>/tensorboard`` by default, W&B under the run name), with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F

from trainers import checkpoint
from trainers.cli import mapping_overrides
from trainers.demos import Demonstrations
from trainers.policies.base import ActorCriticPolicy, Observation
from trainers.rollout import obs_to_device
from trainers.tracking import ProgressBar
from vla_gym.cli import add_env_kwargs_flag, parse_mapping


@dataclass
class SFTConfig:
    steps: int = 2000  # optimiser steps
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10% of lr
    eval_interval: int = 500  # steps between success evaluations (0: only at the end)
    eval_episodes: int = 16
    eval_seed: int = 100_000  # held out: demonstrations are collected from small seeds
    save_interval: int = 500
    log_interval: int = 50
    shuffle_buffer: int = 4096
    only_success: bool = True  # train on successful demonstrations only
    image_shift: int = 0  # augmentation: shift each training image by up to ± this many pixels
    seed: int = 0


def learning_rate(config: SFTConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def check_compatible(dataset: Demonstrations, action_space: gym.spaces.Box) -> None:
    if dataset.meta["action_dim"] != action_space.shape[-1]:
        raise ValueError(
            f"demonstrations in {dataset.root} have {dataset.meta['action_dim']}-D actions, the "
            f"policy's action space is {action_space.shape}"
        )


def demo_batches(
    dataset: Demonstrations,
    action_space: gym.spaces.Box,
    batch_size: int,
    *,
    seed: int,
    shuffle_buffer: int = 4096,
) -> Iterator[tuple[Observation, torch.Tensor]]:
    """Endless shuffled ``(obs, actions)`` batches of ``dataset`` shaped for ``action_space``:
    actions ``(B, chunk, A)`` for a chunked space ``(chunk, A)``, ``(B, A)`` otherwise."""
    check_compatible(dataset, action_space)
    chunked = len(action_space.shape) == 2
    return dataset.batches(
        batch_size,
        action_space.shape[0] if chunked else 1,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        single_action_shape=not chunked,
    )


def train_sft(
    policy: ActorCriticPolicy,
    dataset: Demonstrations,
    config: SFTConfig,
    action_space: gym.spaces.Box,
    *,
    device: torch.device | str = "cpu",
    evaluate: Callable[[ActorCriticPolicy], dict[str, float]] | None = None,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    log: Callable[[dict[str, float], int], None] | None = None,
    run_config: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Minimise ``policy.sft_loss`` on ``dataset``; return the logged history.

    ``evaluate(policy)`` (deterministic success on held-out seeds) runs every
    ``eval_interval`` steps and at the end; its metrics join the history. ``run_config``
    (``TrainConfig.to_dict()``: the policy and env) goes into every checkpoint, so
    ``python -m trainers eval --checkpoint`` needs no ``--config``.
    ``progress`` shows a progress bar over the optimiser steps.
    """
    check_compatible(dataset, action_space)
    device = torch.device(device)
    policy.to(device)
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    step, history = 0, []
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        state = checkpoint.load(checkpoint_path, device)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
        checkpoint.restore_rng(state["rng"])
    elif hasattr(policy, "fit_statistics"):  # e.g. the token policy: state + action-token stats
        policy.fit_statistics(dataset)
    elif hasattr(policy, "set_state_statistics"):
        policy.set_state_statistics(*dataset.state_statistics())

    def save() -> None:
        if checkpoint_path is not None:
            checkpoint.save_atomic(
                {
                    "policy": policy.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "history": history,
                    "sft_config": asdict(config),
                    "demos": str(dataset.root),
                    "rng": checkpoint.rng_state(),
                    "config": run_config or {},
                },
                checkpoint_path,
            )

    bar = ProgressBar(
        progress, config.steps, step, unit="step", keys=("sft/loss", "eval/success_once")
    )

    def record(metrics: dict[str, float]) -> None:
        history.append({"step": step, **metrics})
        bar.update(metrics, n=0)
        if log is not None:
            log(metrics, step)

    batches = demo_batches(
        dataset,
        action_space,
        config.batch_size,
        seed=config.seed + step,  # a resumed run draws a fresh order
        shuffle_buffer=config.shuffle_buffer,
    )
    shift_rng = torch.Generator().manual_seed(config.seed + step)
    started, losses = time.time(), []
    while step < config.steps:
        policy.train()
        obs, actions = next(batches)
        if config.image_shift and isinstance(obs, dict) and "images" in obs:
            obs = {
                **obs,
                "images": {
                    c: random_shift(im, config.image_shift, shift_rng)
                    for c, im in obs["images"].items()
                },
            }
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = policy.sft_loss(obs_to_device(obs, device), actions.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        bar.update()
        if step % config.log_interval == 0 or step == config.steps:
            record(
                {
                    "sft/loss": sum(losses) / len(losses),
                    "sft/grad_norm": float(grad_norm),
                    "sft/lr": optimizer.param_groups[0]["lr"],
                    "time/sft_elapsed": time.time() - started,
                }
            )
            losses = []
        evaluate_now = config.eval_interval and step % config.eval_interval == 0
        if evaluate is not None and (evaluate_now or step == config.steps):
            record(evaluate(policy))
        if step % config.save_interval == 0 or step == config.steps:
            save()
    bar.close()
    return history


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random-shift augmentation (DrQ): uint8 ``(B, H, W, 3)`` images, each translated by up to
    ``pad`` pixels in x and y with edge replication (same shape and dtype)."""
    batch, height, width, _ = images.shape
    padded = F.pad(images.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(width))[:, None, None, :]  # (B, 1, 1, W)
    index = torch.arange(batch)[:, None, None, None]
    channel = torch.arange(3)[None, :, None, None]
    shifted = padded[index, channel, rows, cols]
    return shifted.permute(0, 2, 3, 1).round().to(images.dtype)


# ---------------------------------------------------------------------------------- the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="trainer config: policy and env")
    parser.add_argument(
        "--demos",
        required=True,
        help="native demo directory or local LeRobotDataset (e.g. from `trainers collect`)",
    )
    parser.add_argument(
        "--lerobot-camera",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="LeRobotDataset: the policy's camera NAME reads feature KEY, repeatable (default: "
        "every observation.images.<name> as <name>)",
    )
    parser.add_argument(
        "--lerobot-state", default="", metavar="KEY", help="LeRobotDataset: the state feature"
    )
    parser.add_argument("--out", default="", help="run dir (default: <log_dir>/<name>_sft)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    for field in fields(SFTConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, type=_parse_bool, default=field.default, metavar="BOOL")
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            parser.add_argument(flag, type=kind, default=field.default)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="dotted.key=value overrides, e.g. env.kwargs.image_size=64",
    )
    add_env_kwargs_flag(parser)


def lerobot_options(args: argparse.Namespace) -> dict[str, Any]:
    """``load_demos`` options from ``--lerobot-camera NAME=KEY`` and ``--lerobot-state KEY``."""
    options: dict[str, Any] = {}
    for item in args.lerobot_camera:
        name, sep, key = item.partition("=")
        if not (sep and name and key):
            raise SystemExit(f"--lerobot-camera {item!r} must look like NAME=KEY")
        options.setdefault("cameras", {})[name] = key
    if args.lerobot_state:
        options["state_key"] = args.lerobot_state
    return options


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def run(args: argparse.Namespace) -> int:
    from trainers.config import env_kwargs, load_config
    from trainers.datasets import load_demos
    from trainers.evaluate import evaluate_policy, make_eval_collector
    from trainers.placement import torch_device
    from trainers.policies import make_policy
    from trainers.rollout import make_single_env
    from trainers.tracking import MetricLogger, progress_bar_enabled

    overrides = [*mapping_overrides(parse_mapping(args.env_kwargs)), *args.overrides]
    config = load_config(args.config, overrides)
    sft = SFTConfig(**{f.name: getattr(args, f.name) for f in fields(SFTConfig)})
    device = torch_device(config.cluster.component_placement.get("actor", "cpu"))
    if config.runner.torch_threads:
        torch.set_num_threads(config.runner.torch_threads)
    torch.manual_seed(sft.seed)
    probe = make_single_env(config.env.id, **env_kwargs(config.env))
    observation_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    policy = make_policy(config.policy, observation_space, action_space).to(device)
    dataset = load_demos(args.demos, only_success=sft.only_success, **lerobot_options(args))
    run_name = f"{config.runner.run_name or config.name}_sft"
    run_dir = Path(args.out) if args.out else Path(config.runner.log_dir) / run_name
    collector = make_eval_collector(config, device)
    latest = run_dir / "checkpoints" / checkpoint.LATEST
    resumed_step = checkpoint.load(latest)["step"] if args.resume and latest.is_file() else None
    logger = MetricLogger(
        run_dir,
        loggers=config.runner.loggers,
        # As in training: a resumed run hides the events logged after its checkpoint.
        purge_step=None if resumed_step is None else resumed_step + 1,
        config={**config.to_dict(), "sft": asdict(sft), "demos": str(args.demos)},
        run_name=run_name,
        wandb_project=config.runner.wandb_project,
    )
    progress = progress_bar_enabled(config.runner.progress_bar)

    def evaluate(policy: ActorCriticPolicy) -> dict[str, float]:
        stats = evaluate_policy(collector, policy, sft.eval_episodes, seed=sft.eval_seed)
        return stats.metrics("eval")

    def log(metrics: dict[str, float], step: int) -> None:
        logger.log(metrics, step)
        if not progress:  # the bar shows them otherwise
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(f"step {step}: {shown}", flush=True)

    print(
        f"SFT of {config.policy_name} on {len(dataset)} episodes ({dataset.num_samples} steps) "
        f"from {dataset.root}; run dir {run_dir}"
    )
    try:
        train_sft(
            policy,
            dataset,
            sft,
            action_space,
            device=device,
            evaluate=evaluate,
            checkpoint_path=latest,
            resume=args.resume,
            log=log,
            run_config=config.to_dict(),
            progress=progress,
        )
    finally:
        collector.close()
        logger.close()
    print(f"checkpoint: {latest}")
    return 0
