"""`python -m trainers eval` runs the benchmark's evaluation protocol (or the generic loop)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import vla_gym.eval
from trainers import checkpoint as checkpoints
from trainers import evaluate
from trainers.__main__ import main
from trainers.config import available_configs, load_config


def json_line(out: str) -> dict:
    """The one JSON line `trainers eval` prints (the headline metrics)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, out
    return json.loads(lines[0])


def test_shipped_configs_get_their_benchmark_protocol() -> None:
    for name in available_configs():
        config = load_config(name)
        protocol = vla_gym.eval.protocol_for(config.env.eval_id or config.env.id)
        benchmark = next(
            (b for b in ("calvin", "metaworld", "libero") if b in name.split("_")), "generic"
        )
        assert protocol.benchmark == benchmark, (name, protocol)


def config_checkpoint(tmp_path, name: str, *overrides: str):
    """A checkpoint carrying config ``name`` (weights are not needed: the protocol is faked)."""
    config = load_config(name, list(overrides))
    path = tmp_path / f"{name}.pt"
    checkpoints.save_atomic({"policy": {}, "config": config.to_dict()}, path)
    return config, str(path)


# ------------------------------------------------------- the CLI wiring (protocols faked)
def test_calvin_config_runs_the_chain_protocol(monkeypatch, capsys, tmp_path) -> None:
    from vla_gym.eval import calvin

    calls = []

    def fake_evaluate(policy, *, episodes, **kwargs):
        calls.append((policy, episodes, kwargs))
        metrics = {"avg_len": 2.0, **{f"chain_success_{i}": float(i <= 2) for i in range(1, 6)}}
        result = vla_gym.eval.EvalResult(
            "calvin/D", calvin.ENV_ID, policy.__name__, "avg_len", metrics, {}, episodes, 1, 1.0
        )
        result.report = "CALVIN evaluation (scene D) ... avg. len"
        return result

    monkeypatch.setattr(calvin, "evaluate", fake_evaluate)
    _, checkpoint = config_checkpoint(tmp_path, "calvin_d_ppo_flow_cpu")
    argv = ["eval", "--checkpoint", checkpoint]  # the config comes from the checkpoint
    assert main([*argv, "--episodes", "3"]) == 0
    policy, episodes, kwargs = calls[-1]
    assert episodes == 3 and policy.__name__ == checkpoint
    # the config's observation settings, nothing the protocol fixes (it would refuse them)
    assert kwargs["obs_mode"] == "vla" and kwargs["action_chunk"] == 5
    assert not {"max_steps", "max_episode_steps", "scenes", "task"} & set(kwargs)
    out = capsys.readouterr().out
    assert "CALVIN evaluation (scene D)" in out and "avg. len" in out
    metrics = json_line(out)
    assert metrics["protocol"] == "calvin/D"
    assert metrics["eval/avg_len"] == 2.0 and metrics["eval/num_episodes"] == 3.0
    assert [metrics[f"eval/chain_success_{i}"] for i in range(1, 6)] == [1, 1, 0, 0, 0]
    # without --episodes: the config's eval_episodes; --config replaces the stored config
    assert main(argv) == 0
    assert calls[-1][1] == load_config("calvin_d_ppo_flow_cpu").env.eval_episodes
    full = ["--config", "calvin_d_ppo_flow", "cluster.component_placement.rollout=cpu"]
    assert main([*argv, *full]) == 0
    assert calls[-1][1] == load_config("calvin_d_ppo_flow").env.eval_episodes == 1000


def test_eval_flags_reach_the_protocol(monkeypatch, capsys, tmp_path) -> None:
    from vla_gym.eval import calvin

    calls = []

    def fake_evaluate(policy, *, episodes, **kwargs):
        calls.append(kwargs)
        metrics = {"avg_len": 0.0}
        return vla_gym.eval.EvalResult(
            "calvin/D", calvin.ENV_ID, "x", "avg_len", metrics, {}, 1, 1, 1.0
        )

    monkeypatch.setattr(calvin, "evaluate", fake_evaluate)
    _, checkpoint = config_checkpoint(tmp_path, "calvin_d_ppo_flow_cpu")
    path = tmp_path / "chains.jsonl"
    argv = ["eval", "--checkpoint", checkpoint, "--results-jsonl", str(path)]
    argv += ["--progress", "on", "--env-kwargs", "{calvin_root: /data/calvin, obs_mode: flat}"]
    assert main([*argv, "env.kwargs.obs_mode=vla"]) == 0
    assert calls[-1]["results_path"] == str(path) and calls[-1]["progress"] is True
    # --env-kwargs as env.kwargs overrides; positional ones come after and win
    assert calls[-1]["calvin_root"] == "/data/calvin" and calls[-1]["obs_mode"] == "vla"
    assert main(["eval", "--checkpoint", checkpoint, "--progress", "off"]) == 0
    assert calls[-1]["results_path"] is None and calls[-1]["progress"] is False
    assert "calvin_root" not in calls[-1]


def test_protocol_generic_forces_the_generic_protocol(monkeypatch, capsys, tmp_path) -> None:
    from vla_gym.eval import calvin, generic

    calls = []

    def fake_generic(policy, env_id, *, episodes, seed, episode_metrics, **kwargs):
        calls.append((env_id, episodes, seed, episode_metrics, kwargs["max_steps"]))
        metrics = {"success_once": 0.5, "return": 1.0}
        return vla_gym.eval.EvalResult(
            "generic", env_id, "x", "success_once", metrics, {}, episodes, 1, 1.0
        )

    monkeypatch.setattr(generic, "evaluate", fake_generic)
    monkeypatch.setattr(calvin, "evaluate", lambda *a, **k: pytest.fail("protocol ran"))
    _, checkpoint = config_checkpoint(tmp_path, "calvin_d_ppo_flow_cpu", "runner.seed=3")
    argv = ["eval", "--checkpoint", checkpoint, "--protocol", "generic", "--episodes", "4"]
    assert main(argv) == 0
    # validation seeds, apart from the training rollouts'; the config's episode metrics and
    # horizon (120 steps in the CPU recipe)
    seed = 3 + evaluate.VALIDATION_SEED_OFFSET
    assert calls == [("VLA/CALVIN-D-v0", 4, seed, {"avg_len": "subtasks_solved"}, 120)]
    assert json_line(capsys.readouterr().out) == {
        "protocol": "generic",
        "eval/success_once": 0.5,
        "eval/return": 1.0,
        "eval/num_episodes": 4.0,
    }


# -------------------------------------------------------------------- real end-to-end runs
TINY_CONFIG = """\
env:
  id: {train_id}
  eval_id: {eval_id}
  obs_mode: flat
  num_envs: 2
  backend: sync
  max_episode_steps: 5
  kwargs: {kwargs}
algorithm:  # valid without --smoke too (eval loads the config as it is)
  global_batch_size: 10
  micro_batch_size: 5
policy:
  name: mlp
  hidden_sizes: [16]
  value_hidden_sizes: [16]
runner:
  torch_threads: 1
"""


def smoke_checkpoint(root, name: str, **fields: str):
    """A `trainers train --smoke` run of a tiny flat-observation MLP config: (config, ckpt)."""
    config = root / f"{name}.yaml"
    config.write_text(TINY_CONFIG.format(**{"kwargs": "{}", **fields}))
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--config", str(config), "--smoke", f"runner.log_dir={root}"]) == 0
    finally:
        torch.set_num_threads(threads)
    checkpoint = root / name / "checkpoints" / "latest.pt"
    assert checkpoint.is_file()
    return config, checkpoint


@pytest.fixture(scope="module")
def ml45_checkpoint(tmp_path_factory):
    pytest.importorskip("metaworld", reason="Meta-World not installed (pip install metaworld)")
    return smoke_checkpoint(
        tmp_path_factory.mktemp("ml45"),
        "tiny_ml45",
        train_id="VLA/MetaWorld-ML45-Train-v0",
        eval_id="VLA/MetaWorld-ML45-Test-v0",
    )


def test_metaworld_protocol_end_to_end(ml45_checkpoint, capsys, tmp_path) -> None:
    from vla_gym.envs.metaworld.tasks import make_suite

    _, checkpoint = ml45_checkpoint
    capsys.readouterr()
    video = tmp_path / "episode.mp4"
    argv = ["eval", "--checkpoint", str(checkpoint)]  # the checkpoint's own (smoke) config
    # budget 7 over ML45-test's 5 tasks: two trials each
    assert main([*argv, "--episodes", "7", "--video", str(video), "env.eval_num_envs=2"]) == 0
    out = capsys.readouterr().out
    assert f"Meta-World ML45-test, policy {checkpoint}: 10 episodes, 5-step limit" in out
    for task in make_suite("ML45-test").tasks:
        assert task in out
    metrics = json_line(out)
    assert metrics["protocol"] == "metaworld/ML45-test"
    assert metrics["eval/num_episodes"] == 10.0
    assert set(metrics) >= {"eval/success", "eval/task_mean", "eval/easy", "eval/hard"}
    assert all(0.0 <= metrics[key] <= 1.0 for key in ("eval/success", "eval/task_mean"))
    import imageio.v2 as imageio

    assert len(imageio.mimread(video)) == 6  # the reset frame + 5 steps


def test_generic_loop_end_to_end(ml45_checkpoint, capsys) -> None:
    config, checkpoint = ml45_checkpoint
    capsys.readouterr()
    argv = ["eval", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--protocol", "generic", "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert f"VLA/MetaWorld-ML45-Test-v0, policy {checkpoint}: 3 episodes" in out
    metrics = json_line(out)
    assert metrics["protocol"] == "generic" and metrics["eval/num_episodes"] == 3.0
    assert 0 < metrics["eval/episode_len"] <= 5 and math.isfinite(metrics["eval/return"])


def test_calvin_protocol_end_to_end(capsys, tmp_path) -> None:
    pytest.importorskip("pybullet", reason="CALVIN needs pybullet (pip install pybullet)")
    config, checkpoint = smoke_checkpoint(
        tmp_path,
        "tiny_calvin",
        train_id="VLA/CALVIN-D-v0",
        eval_id="VLA/CALVIN-D-v0",
        kwargs="{assets: builtin}",
    )
    capsys.readouterr()
    argv = ["eval", "--config", str(config), "--checkpoint", str(checkpoint), "--episodes", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"policy {checkpoint}: 1 chains, 360 steps per subtask" in out
    metrics = json_line(out)
    assert metrics["protocol"] == "calvin/D" and metrics["eval/num_episodes"] == 1.0
    assert 0.0 <= metrics["eval/avg_len"] <= 5.0
    rates = [metrics[f"eval/chain_success_{i}"] for i in range(1, 6)]
    assert rates == sorted(rates, reverse=True)  # P(at least i in a row) cannot grow with i
    assert metrics["eval/avg_len"] == pytest.approx(sum(rates))
