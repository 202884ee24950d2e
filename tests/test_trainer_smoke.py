"""End-to-end: `--smoke` runs of the shipped CPU configs, kill-and-resume, eval, videos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import SHARED_DIR

import vla_gym  # noqa: F401  (registers the IDs)
from trainers.config import available_configs, load_config
from trainers.policies import policy_class
from trainers.schema import ConfigError
from trainers.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
PPO_TAGS = {
    "actor/loss",
    "actor/value_loss",
    "actor/grad_norm",
    "actor/approx_kl",
    "actor/pg_clipfrac",
    "actor/value_clip_ratio",
    "actor/entropy",
    "actor/lr",
    "critic/explained_variance",
    "rollout/returns_mean",
    "rollout/advantages_mean",
    "rollout/advantages_max",
    "rollout/advantages_min",
    "rollout/rewards",
    "env/episode_len",
    "env/return",
    "env/reward",
    "env/success_once",
    "time/env_step",
    "time/policy_inference",
    "time/update",
    "time/rollout",
}
GRPO_TAGS = PPO_TAGS - {
    "actor/value_loss",
    "actor/value_clip_ratio",
    "critic/explained_variance",
    "rollout/returns_mean",
}
# The trainer's own CPU configs (the flow_*/token_* ones are smoke-tested with their policies).
CPU_CONFIGS = [
    name
    for name in available_configs()
    if (name.endswith("_cpu") or name == "panda_pick_cube_ppo_mlp")
    and not name.startswith(("flow_", "token_"))
]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


LIBERO_ASSETS = SHARED_DIR / "assets" / "libero"


@pytest.fixture(autouse=True)
def _libero_assets(monkeypatch):
    """LIBERO configs run on the shared offline asset pack when it is there."""
    if LIBERO_ASSETS.is_dir():
        monkeypatch.setenv("VLA_GYM_LIBERO_ASSETS", str(LIBERO_ASSETS))


def skip_unless_runnable(config) -> None:
    if config.env.id not in gym.registry:
        pytest.skip(f"{config.env.id} is not registered (its benchmark adapter is not installed)")
    try:
        policy_class(config.policy_name)
    except ModuleNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        gym.make(config.env.id, **config.env.kwargs).close()
    except ImportError as exc:  # vla_gym's MissingDependencyError names the extra
        pytest.skip(f"simulator for {config.env.id} not installed: {exc}")
    except OSError as exc:  # e.g. LIBERO without its (offline) asset folder
        pytest.skip(f"assets for {config.env.id} missing: {exc}")


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_smoke_run_writes_the_metric_tags(name, tmp_path):
    config = load_config(name, [f"runner.log_dir={tmp_path}"], smoke=True)
    skip_unless_runnable(config)
    torch.set_num_threads(1)
    trainer = Trainer(config)
    trainer.train()
    assert trainer.iteration == 2
    tags = scalars(trainer.run_dir)
    expected = GRPO_TAGS if config.algorithm.name == "grpo" else PPO_TAGS
    assert expected <= set(tags), sorted(expected - set(tags))
    assert [v for _, v in tags["train/iteration"]] == [1.0, 2.0]
    success = tags["env/success_once"][-1][1]
    assert 0.0 <= success <= 1.0
    state = torch.load(trainer.latest_path, weights_only=False)
    assert state["iteration"] == 2 and state["env_steps"] == trainer.env_steps > 0


def test_eval_and_video_of_a_checkpoint(tmp_path):
    config = load_config("panda_pick_cube_ppo_mlp_cpu", [f"runner.log_dir={tmp_path}"], smoke=True)
    Trainer(config).train()
    checkpoint = tmp_path / config.name / "checkpoints" / "latest.pt"
    video = tmp_path / "episode.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers",
            "eval",
            "--config",
            "panda_pick_cube_ppo_mlp_cpu",
            "--checkpoint",
            str(checkpoint),
            "--episodes",
            "2",
            "--video",
            str(video),
            "env.eval_num_envs=2",
            "env.max_steps=10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert '"eval/success_once"' in result.stdout and '"eval/num_episodes": 2.0' in result.stdout
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) == 11  # the reset frame + 10 steps
    assert frames[0].shape[0] > 128  # the instruction/success bands around the camera frame


def test_cli_reports_config_errors(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers",
            "train",
            "--config",
            "panda_pick_cube_ppo_mlp_cpu",
            "algorithm.lr_typo=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown key 'algorithm.lr_typo'" in result.stderr


def test_kill_and_resume_continues_counters_and_metrics(tmp_path):
    overrides = [
        f"runner.log_dir={tmp_path}",
        "runner.save_interval=1",
        "runner.eval_interval=0",
        "runner.video_interval=0",
        "runner.progress_bar=off",
        "env.num_envs=2",
        "env.max_steps=5",
        "rollout.num_steps=4",
        "algorithm.update_epochs=1",
        "algorithm.global_batch_size=8",
        "algorithm.micro_batch_size=8",
        "policy.hidden_sizes=[16]",
        "policy.value_hidden_sizes=[16]",
        "runner.torch_threads=1",
    ]
    command = [sys.executable, "-m", "trainers", "train", "--config", "panda_pick_cube_ppo_mlp_cpu"]
    latest = tmp_path / "panda_pick_cube_ppo_mlp_cpu" / "checkpoints" / "latest.pt"
    process = subprocess.Popen(
        [*command, *overrides, "runner.max_iterations=10000"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        killed_at = None
        while time.monotonic() < deadline:
            if latest.exists():
                # Never a partial file: checkpoints are written by an atomic rename.
                killed_at = torch.load(latest, weights_only=False)["iteration"]
                if killed_at >= 3:
                    break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)  # mid-run, no clean shutdown
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed_at is not None and killed_at >= 3
    resumed_from = torch.load(latest, weights_only=False)
    target = resumed_from["iteration"] + 3
    result = subprocess.run(
        [*command, *overrides, f"runner.max_iterations={target}", "--resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert f"from iteration {resumed_from['iteration']}" in result.stdout
    final = torch.load(latest, weights_only=False)
    assert final["iteration"] == target
    assert final["env_steps"] > resumed_from["env_steps"]
    assert final["elapsed"] > resumed_from["elapsed"]
    tags = scalars(latest.parents[1])
    iterations = [v for _, v in sorted(tags["train/iteration"])]
    assert iterations == [float(i) for i in range(1, target + 1)]  # no gap, no duplicate
    steps = [s for s, _ in sorted(tags["train/env_steps"])]
    assert steps == sorted(set(steps))
    assert [v for _, v in sorted(tags["train/env_steps"])] == [float(s) for s in steps]
    elapsed = [v for _, v in sorted(tags["time/elapsed"])]
    assert elapsed == sorted(elapsed)


def test_separate_rollout_copy_stays_in_sync(tmp_path):
    """Rollout and actor on different devices use two copies: weights and buffers sync."""
    import copy

    config = load_config("panda_pick_cube_ppo_mlp_cpu", [f"runner.log_dir={tmp_path}"], smoke=True)
    trainer = Trainer(config)
    trainer.rollout_policy = copy.deepcopy(trainer.policy)  # as with rollout=cuda:1, actor=cuda:0
    before = trainer.policy.normalizer.count.item()
    trainer.train_iteration()
    assert trainer.policy.normalizer.count.item() > before  # statistics gathered while acting
    for (name, a), (_, b) in zip(
        trainer.policy.state_dict().items(),
        trainer.rollout_policy.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    trainer.collector.close()


def test_anneal_lr_falls_linearly_to_zero_and_survives_resume(tmp_path):
    overrides = [
        f"runner.log_dir={tmp_path}",
        "algorithm.anneal_lr=true",
        "runner.max_iterations=4",
        "algorithm.lr=0.001",
        "algorithm.value_lr=0.002",
    ]
    config = load_config("panda_pick_cube_ppo_mlp_cpu", overrides, smoke=True)
    trainer = Trainer(config)
    seen = [trainer.train_iteration()["actor/lr"] for _ in range(2)]
    assert seen == pytest.approx([1e-3, 0.75e-3])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.75e-3, 1.5e-3])
    trainer.save()
    trainer.collector.close()
    # the checkpoint holds the decayed rates; the schedule comes from the config, not from them
    resumed = Trainer(config, resume=True)
    assert resumed.iteration == 2
    assert resumed.train_iteration()["actor/lr"] == pytest.approx(0.5e-3)
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([0.5e-3, 1e-3])
    resumed.collector.close()


def test_lr_warmup_rises_linearly_then_the_anneal_takes_over(tmp_path):
    from trainers.algorithms import PPOConfig

    config = PPOConfig(lr_warmup_iterations=3, anneal_lr=True)
    scales = [config.lr_scale(i, max_iterations=10) for i in range(5)]
    assert scales == pytest.approx([0.25 * 1.0, 0.5 * 0.9, 0.75 * 0.8, 0.7, 0.6])
    assert PPOConfig(lr_warmup_iterations=2).lr_scale(7, 10) == 1.0
    with pytest.raises(ValueError, match="lr_warmup_iterations"):
        PPOConfig(lr_warmup_iterations=-1)
    overrides = [
        f"runner.log_dir={tmp_path}",
        "algorithm.lr_warmup_iterations=1",
        "algorithm.lr=0.001",
        "algorithm.value_lr=0.002",
    ]
    trainer = Trainer(load_config("panda_pick_cube_ppo_mlp_cpu", overrides, smoke=True))
    seen = [trainer.train_iteration()["actor/lr"] for _ in range(2)]
    assert seen == pytest.approx([0.5e-3, 1e-3])
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([1e-3, 2e-3])
    trainer.collector.close()


def test_behaviour_cloning_term_trains_on_the_named_demonstrations(tmp_path):
    from trainers.collect import collect

    def config_with(demos):
        overrides = [f"runner.log_dir={tmp_path}", "algorithm.critic_warmup_iterations=0"]
        overrides += ["algorithm.sft_coef=0.5", f"algorithm.sft_demos={demos}"]
        return load_config("flow_panda_state_ppo_cpu", overrides, smoke=True)

    with pytest.raises(FileNotFoundError, match="nowhere is neither a demonstration directory"):
        Trainer(config_with(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="algorithm.sft_coef > 0 needs algorithm.sft_demos"):
        Trainer(config_with(""))
    config = config_with(tmp_path / "demos")
    env = config.env
    demo_kwargs = {**env.kwargs, "obs_mode": env.obs_mode}
    collect(env.id, 1, str(tmp_path / "demos"), num_envs=1, env_kwargs=demo_kwargs)
    trainer = Trainer(config)
    metrics = trainer.train_iteration()
    trainer.collector.close()
    assert 0 < metrics["actor/sft_loss"] < 10
