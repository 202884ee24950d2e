"""`python -m trainers.sb3`: SB3 PPO and SAC on VLA/PandaPickCube-v0 (flat), tiny budgets."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("stable_baselines3")

from trainers import sb3  # noqa: E402


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_sb3_entry_point_trains_evaluates_and_logs(algo, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code = sb3.main(
        [
            "--algo",
            algo,
            "--env",
            "VLA/PandaPickCube-v0",
            "--steps",
            "256",
            "--num-envs",
            "2",
            "--eval-freq",
            "128",
            "--eval-episodes",
            "2",
            "--log-dir",
            str(tmp_path),
            "--env-kwargs",
            '{"max_episode_steps": 16}',
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["env_steps"] >= 256
    assert 0.0 <= result["eval/success_rate"] <= 1.0
    assert (tmp_path / f"{algo}_model.zip").is_file()
    run_dirs = sorted(tmp_path.glob(f"{algo}_*"))
    run_dirs = [d for d in run_dirs if d.is_dir() and d.name != f"{algo}_eval"]
    events = EventAccumulator(str(run_dirs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/success_rate", "eval/mean_reward", "rollout/ep_rew_mean"} <= tags


def test_sb3_rejects_unknown_algorithm():
    with pytest.raises(SystemExit):
        sb3.main(["--algo", "td3", "--steps", "10"])
