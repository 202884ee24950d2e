"""`vla_gym.eval.libero` on the offline asset pack (2 tasks x 2 init states, short episodes)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import SHARED_DIR

from vla_gym.eval import ZeroPolicy
from vla_gym.eval.libero import evaluate, main

ASSETS = SHARED_DIR / "assets" / "libero"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("libero") is None or not ASSETS.is_dir(),
    reason="hf-libero or the offline LIBERO asset pack (../shared/assets/libero) is missing",
)


def test_every_trial_runs_once_and_is_reported(capsys):
    result = main(
        [
            "--suite", "goal", "--tasks", "2,5", "--num-trials", "2", "--num-envs", "3",
            "--backend", "sync", "--policy", "zero", "--max-steps", "4", "--image-size", "16",
            "--libero-assets", str(ASSETS),
        ]
    )  # fmt: skip
    # 4 trials over 3 envs: two rounds, the second partial
    assert result.details["trials"] == [(2, 0, False), (2, 1, False), (5, 0, False), (5, 1, False)]
    assert len(result.per_task) == 2 and result.score == 0.0
    assert result.env_steps == 4 * 4 and result.details["max_steps"] == 4
    out = capsys.readouterr().out
    assert "LIBERO-goal, policy zero: 4 trials" in out and "suite success: 0.0%" in out
    for language in result.per_task:
        assert language in out


def test_callable_policy_and_success_counted(monkeypatch):
    """A policy that 'succeeds' is simulated by marking success in the env; checks bookkeeping."""
    from vla_gym.envs.libero import libero_env

    original = libero_env.LiberoEnv._step_sim

    def succeed_on_task_1(self, action):
        reward, success, terminated = original(self, action)
        return reward, self.current_task_id == 1, terminated

    monkeypatch.setattr(libero_env.LiberoEnv, "_step_sim", succeed_on_task_1)
    calls = []

    class Policy(ZeroPolicy):
        def act(self, obs, infos):
            calls.append(obs["state"].shape)
            return np.stack([super().act(obs, infos)] * 2)

    result = evaluate(
        "spatial", lambda envs: Policy(envs.single_action_space), num_trials=1, tasks=[0, 1],
        num_envs=2, backend="sync", image_size=16, max_steps=3, libero_assets=str(ASSETS),
    )  # fmt: skip
    assert result.details["trials"] == [(0, 0, False), (1, 0, True)]
    assert list(result.per_task.values()) == [0.0, 1.0] and result.score == 0.5
    assert calls[0] == (2, 8)
    assert "suite success: 50.0%" in result.report
    assert np.isfinite(result.seconds)


TINY_LIBERO_MLP = """\
env:
  id: VLA/LIBERO-Goal-v0
  obs_mode: flat
  num_envs: 2
  backend: sync
  max_episode_steps: 3
  kwargs: {image_size: 16}
  eval_kwargs: {task_ids: [0, 1]}
algorithm:
  global_batch_size: 6
  micro_batch_size: 6
policy:
  name: mlp
  hidden_sizes: [8]
  value_hidden_sizes: [8]
runner:
  torch_threads: 1
"""


def test_trainer_checkpoint_runs_the_libero_protocol(tmp_path, monkeypatch, capsys):
    """`trainers eval --checkpoint` (no --config): the suite's protocol on the observation
    settings and task subset of the checkpoint's own config."""
    import torch

    from trainers.__main__ import main as trainers_main

    monkeypatch.setenv("VLA_GYM_LIBERO_ASSETS", str(ASSETS))
    config = tmp_path / "tiny_libero.yaml"
    config.write_text(TINY_LIBERO_MLP)
    threads = torch.get_num_threads()
    try:
        argv = ["train", "--config", str(config), "--smoke", f"runner.log_dir={tmp_path}"]
        assert trainers_main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    checkpoint = tmp_path / "tiny_libero" / "checkpoints" / "latest.pt"
    capsys.readouterr()
    assert trainers_main(["eval", "--checkpoint", str(checkpoint), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert f"LIBERO-goal, policy {checkpoint}: 2 trials (1 init states per task), 3-step" in out
    assert '"protocol": "libero/goal"' in out and '"eval/num_episodes": 2.0' in out


def test_task_count_ignores_the_vector_env_options():
    """The trainer hands make_vec's options (GPU devices, Ray settings) along with the env
    kwargs; the one env that counts the suite's tasks is built without them."""
    from vla_gym.eval.libero import _num_tasks

    kwargs = {"libero_assets": str(ASSETS), "devices": "0", "resources_per_worker": {"sim": 1}}
    assert _num_tasks("VLA/LIBERO-Spatial-v0", kwargs) == 10


def test_the_protocol_refuses_an_init_state_subset():
    # the protocol's trials are init states 0..num_trials-1 of every task
    with pytest.raises(ValueError, match="fixes"):
        evaluate("object", "random", num_trials=1, init_state_ids=[25, 26])
