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
            '{"max_steps": 16}',
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


def test_normalize_obs_wraps_in_vec_normalize_observations_only():
    from stable_baselines3.common.vec_env import VecNormalize

    kwargs = {"num_envs": 1, "seed": 0, "log_dir": None, "env_kwargs": {"max_steps": 8}}
    model = sb3.make_model("sac", "VLA/PandaPickCube-v0", **kwargs)  # on by default
    env = model.get_env()
    assert isinstance(env, VecNormalize)
    assert env.norm_obs and not env.norm_reward and env.training
    plain = sb3.make_model("sac", "VLA/PandaPickCube-v0", normalize_obs=False, **kwargs)
    assert plain.get_vec_normalize_env() is None
    env.close()
    plain.get_env().close()


def test_entry_point_saves_statistics_and_no_normalize_obs_skips_them(tmp_path, capsys):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    common = ["--algo", "ppo", "--steps", "64", "--num-envs", "2", "--eval-freq", "32"]
    common += ["--eval-episodes", "1", "--env-kwargs", '{"max_steps": 8}']
    common += ["--hyperparameters", '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}']
    assert sb3.main([*common, "--log-dir", str(tmp_path / "on")]) == 0
    assert sb3.main([*common, "--log-dir", str(tmp_path / "off"), "--no-normalize-obs"]) == 0
    capsys.readouterr()
    stats = VecNormalize.load(
        str(tmp_path / "on" / "ppo_vecnormalize.pkl"),
        DummyVecEnv([sb3.make_env_fn("VLA/PandaPickCube-v0", {"max_steps": 8})]),
    )
    assert stats.obs_rms.count > 64  # updated by the training steps
    assert not (tmp_path / "off" / "ppo_vecnormalize.pkl").exists()
    stats.close()


def _learning_panda():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_panda.py"
    spec = importlib.util.spec_from_file_location("learning_panda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_panda_predict_normalises_and_statistics_survive_resume(tmp_path):
    import numpy as np

    bench = _learning_panda()
    learner = bench.SB3Learner(
        "sac", tmp_path, 0, {"learning_starts": 16, "buffer_size": 1000}, num_envs=2
    )
    learner.learn(32)
    stats = learner.model.get_vec_normalize_env()
    mean, var = stats.obs_rms.mean.copy(), stats.obs_rms.var.copy()
    assert not np.allclose(var, 1.0)  # running statistics moved off their initial values

    obs = np.random.default_rng(0).normal(0.3, 0.2, size=(3, 10)).astype(np.float32)
    normalised = np.clip((obs - mean) / np.sqrt(var + stats.epsilon), -10, 10)
    expected = learner.model.predict(normalised, deterministic=True)[0]
    np.testing.assert_allclose(learner.predict(obs), expected, atol=1e-6)
    np.testing.assert_array_equal(stats.obs_rms.mean, mean)  # predict never updates them
    assert not np.allclose(learner.model.predict(obs, deterministic=True)[0], expected)

    learner.save()
    resumed = bench.SB3Learner(
        "sac", tmp_path, 0, {"learning_starts": 16, "buffer_size": 1000}, num_envs=2
    )
    assert resumed.env_steps == learner.env_steps
    np.testing.assert_array_equal(resumed.model.get_vec_normalize_env().obs_rms.mean, mean)
    np.testing.assert_allclose(resumed.predict(obs), expected, atol=1e-6)
    with pytest.raises(ValueError, match="normalize_obs"):
        bench.SB3Learner("sac", tmp_path, 0, normalize_obs=False, num_envs=2)


def test_progress_bar_verbose_and_env_kwargs_in_the_common_syntax(tmp_path, capsys):
    args = ["--algo", "ppo", "--steps", "64", "--num-envs", "2", "--eval-freq", "32"]
    args += ["--eval-episodes", "1", "--log-dir", str(tmp_path), "env.kwargs.max_steps=8"]
    args += ["--hyperparameters", '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}']
    assert sb3.main([*args, "--progress", "on", "--verbose", "1"]) == 0
    out, err = capsys.readouterr()
    assert "64/64" in err and "success_rate=" in err  # the bar reached the total
    assert "total_timesteps" in out  # SB3's own metric table (verbose 1)
    with pytest.raises(SystemExit, match="env.kwargs.KEY=VALUE"):
        sb3.main([*args[:-2], "max_steps=8"])
