"""Stable-Baselines3 MLP baselines on vla_gym state observations.

``python -m trainers.sb3 --algo ppo|sac --env VLA/PandaPickCube-v0 --steps N [env.kwargs.K=V]``

The env is ``gym.make(env_id, obs_mode="flat")`` straight into SB3 (no adapter code). Every
``--eval-freq`` env steps the deterministic policy is evaluated on ``--eval-episodes`` episodes
(success = ``info["is_success"]`` at episode end, which SB3's EvalCallback reads); TensorBoard
logs go to ``--log-dir`` (``eval/success_rate``, ``rollout/success_rate``, ...).

``--normalize-obs`` (default on; ``--no-normalize-obs`` turns it off) wraps the vector env in
SB3's own ``VecNormalize(norm_obs=True, norm_reward=False)``: observations are standardised with
running statistics, as our PPO's MLP policy does and as rl-baselines3-zoo does for robotics envs
(``normalize: true``). The evaluation env is a ``VecNormalize(training=False)`` that
EvalCallback syncs with the training statistics; the statistics are saved next to the model
(``<algo>_vecnormalize.pkl``) and must be loaded with it (``VecNormalize.load``).

``--progress auto|on|off`` shows a progress bar over the env steps (auto: on a terminal outside
CI) and ``--verbose 0|1|2`` is SB3's own logging level (1 prints its metric tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trainers.tracking import ProgressBar, progress_bar_enabled
from vla_gym.cli import add_env_kwargs_arguments, env_kwargs_from_args

ALGOS = ("ppo", "sac")


def make_env_fn(env_id: str, env_kwargs: dict[str, Any]):
    def make() -> gym.Env:
        from trainers.rollout import make_single_env  # max_steps: the env's own limit

        return make_single_env(env_id, obs_mode="flat", **env_kwargs)

    return make


def default_hyperparameters(algo: str) -> dict[str, Any]:
    """MLP settings matching the trainer's PandaPickCube recipe where the algorithms overlap."""
    import torch

    if algo == "ppo":
        return {
            "n_steps": 128,
            "batch_size": 256,
            "n_epochs": 8,
            "learning_rate": 3e-4,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_range": 0.2,
            "ent_coef": 0.0,
            "max_grad_norm": 1.0,
            "policy_kwargs": {
                "net_arch": {"pi": [256, 256, 256], "vf": [256, 256, 256]},
                "activation_fn": torch.nn.Tanh,
                "log_std_init": -0.5,
            },
        }
    return {
        "learning_rate": 3e-4,
        "buffer_size": 1_000_000,
        "batch_size": 256,
        "gamma": 0.99,
        "tau": 0.005,
        "learning_starts": 1000,
        "policy_kwargs": {"net_arch": [256, 256]},
    }


def make_model(
    algo: str,
    env_id: str,
    *,
    num_envs: int,
    seed: int,
    log_dir: str | None,
    env_kwargs: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    normalize_obs: bool = True,
    verbose: int = 0,
):
    """An SB3 model on ``num_envs`` envs, in ``VecNormalize`` (observations only) if asked."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if algo not in ALGOS:
        raise ValueError(f"--algo must be one of {ALGOS}, got {algo!r}")
    env = make_vec_env(
        make_env_fn(env_id, dict(env_kwargs or {})),
        n_envs=num_envs,
        seed=seed,
        monitor_kwargs={"info_keywords": ("is_success",)},
    )
    if normalize_obs:
        env = VecNormalize(env, norm_obs=True, norm_reward=False)
    params = {**default_hyperparameters(algo), **(hyperparameters or {})}
    cls = PPO if algo == "ppo" else SAC
    return cls(
        "MlpPolicy",
        env,
        seed=seed,
        verbose=verbose,
        tensorboard_log=log_dir,
        device="cpu",
        **params,
    )


def train(
    algo: str,
    env_id: str,
    steps: int,
    *,
    num_envs: int = 0,
    seed: int = 0,
    log_dir: str = "runs/sb3",
    eval_freq: int = 10_000,
    eval_episodes: int = 20,
    env_kwargs: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    normalize_obs: bool = True,
    verbose: int = 0,
    progress: str = "auto",
) -> dict[str, float]:
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

    num_envs = num_envs or (16 if algo == "ppo" else 1)
    model = make_model(
        algo,
        env_id,
        num_envs=num_envs,
        seed=seed,
        log_dir=log_dir,
        env_kwargs=env_kwargs,
        hyperparameters=hyperparameters,
        normalize_obs=normalize_obs,
        verbose=verbose,
    )
    eval_env: VecEnv = make_vec_env(
        make_env_fn(env_id, dict(env_kwargs or {})), n_envs=1, seed=seed + 10_000
    )
    if normalize_obs:  # EvalCallback copies the training statistics in before each evaluation
        eval_env = VecNormalize(eval_env, training=False, norm_obs=True, norm_reward=False)
    callback = EvalCallback(
        eval_env,
        n_eval_episodes=eval_episodes,
        eval_freq=max(1, eval_freq // num_envs),  # counted in vector steps
        deterministic=True,
        log_path=str(Path(log_dir) / f"{algo}_eval"),
        verbose=verbose,
    )
    bar = ProgressBar(
        progress_bar_enabled(progress), steps, unit="step", keys=("eval/success_rate",)
    )
    callbacks = [callback, progress_callback(bar, callback)]
    try:
        model.learn(total_timesteps=steps, callback=callbacks, tb_log_name=algo)
    finally:
        bar.close()
    model.save(str(Path(log_dir) / f"{algo}_model"))
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.save(str(Path(log_dir) / f"{algo}_vecnormalize.pkl"))
    success = callback.evaluations_successes[-1] if callback.evaluations_successes else []
    result = {
        "env_steps": float(model.num_timesteps),
        "eval/success_rate": float(sum(success) / len(success)) if success else float("nan"),
        "eval/mean_reward": float(callback.last_mean_reward),
    }
    eval_env.close()
    model.get_env().close()
    return result


def progress_callback(bar: ProgressBar, evaluation: Any) -> Any:
    """An SB3 callback advancing ``bar`` by the env steps taken (our tqdm bar: SB3's own needs
    ``rich``), showing the last evaluation's success rate."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_step(self) -> bool:
            successes = evaluation.evaluations_successes
            shown = {"eval/success_rate": float(np.mean(successes[-1]))} if successes else {}
            bar.update(shown, n=self.model.num_timesteps - self.reported)
            self.reported = self.model.num_timesteps
            return True

        def _on_training_start(self) -> None:
            self.reported = self.model.num_timesteps

    return Progress()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.sb3", description=__doc__)
    parser.add_argument("--algo", required=True, choices=ALGOS)
    parser.add_argument("--env", default="VLA/PandaPickCube-v0")
    parser.add_argument("--steps", type=int, required=True, help="total env steps")
    parser.add_argument("--num-envs", type=int, default=0, help="default: ppo 16, sac 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default="runs/sb3")
    parser.add_argument("--eval-freq", type=int, default=10_000, help="env steps between evals")
    parser.add_argument("--eval-episodes", type=int, default=20)
    add_env_kwargs_arguments(parser)
    parser.add_argument(
        "--hyperparameters",
        default="{}",
        help="JSON overriding default_hyperparameters(algo), e.g. '{\"gamma\": 0.98}'",
    )
    parser.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto", help="progress bar"
    )
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0, help="SB3 verbosity")
    parser.add_argument(
        "--normalize-obs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="VecNormalize the observations with running statistics (default: on)",
    )
    args = parser.parse_args(argv)
    result = train(
        args.algo,
        args.env,
        args.steps,
        num_envs=args.num_envs,
        seed=args.seed,
        log_dir=args.log_dir,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        env_kwargs=env_kwargs_from_args(args),
        hyperparameters=json.loads(args.hyperparameters),
        normalize_obs=args.normalize_obs,
        verbose=args.verbose,
        progress=args.progress,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
