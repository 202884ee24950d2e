"""`python -m trainers eval` runs the benchmark's evaluation protocol (or the generic loop)."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest
import torch

import vla_gym  # noqa: F401  (registers the IDs)
from trainers import evaluate
from trainers.__main__ import main
from trainers.config import available_configs, load_config
from trainers.evaluate import Protocol, protocol_table, select_protocol, trials_per_task


def json_line(out: str) -> dict:
    """The one JSON line `trainers eval` prints (the headline metrics)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, out
    return json.loads(lines[0])


# --------------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize(
    ("env_id", "expected"),
    [
        ("VLA/CALVIN-D-v0", Protocol("calvin", "D")),
        ("VLA/CALVIN-ABC-v0", Protocol("calvin", "D")),  # the protocol is always scene D
        ("VLA/MetaWorld-MT50-v0", Protocol("metaworld", "MT50")),
        ("VLA/MetaWorld-ML45-Test-v0", Protocol("metaworld", "ML45-test")),
        ("VLA/MetaWorld-ML45-Train-v0", Protocol("metaworld", "ML45-train")),
        ("VLA/LIBERO-10-v0", Protocol("libero", "10")),
        ("VLA/LIBERO-Spatial-v0", Protocol("libero", "spatial")),
        ("VLA/LIBERO-90-v0", Protocol("libero", "90")),
        ("VLA/MetaWorld-v0", None),  # single task: generic
        ("VLA/PandaPickCube-v0", None),
        ("VLA/PandaPickCubeVision-v0", None),
        ("VLA/Behavior-v0", None),
    ],
)
def test_eval_id_selects_its_protocol(env_id: str, expected: Protocol | None) -> None:
    assert select_protocol(env_id) == expected
    assert select_protocol(env_id, "generic") is None  # --protocol generic always wins


def test_table_covers_registered_ids_only() -> None:
    table = protocol_table()
    assert set(table) <= set(gym.registry)
    assert {protocol.benchmark for protocol in table.values()} == set(evaluate.RUNNERS)


def test_shipped_configs_get_their_benchmark_protocol() -> None:
    for name in available_configs():
        config = load_config(name)
        protocol = select_protocol(config.env.eval_id or config.env.id)
        benchmark = next(
            (b for b in ("calvin", "metaworld", "libero") if b in name.split("_")), None
        )
        assert (protocol and protocol.benchmark) == benchmark, (name, protocol)


@pytest.mark.parametrize(
    ("episodes", "num_tasks", "full", "trials"),
    [(5, 5, 20, 1), (7, 5, 20, 2), (10_000, 5, 20, 20), (1, 50, 10, 1), (500, 50, 10, 10)],
)
def test_episode_budget_becomes_trials_per_task(episodes, num_tasks, full, trials) -> None:
    assert trials_per_task(episodes, num_tasks, full) == trials


# ------------------------------------------------------- the CLI wiring (protocols faked)
def test_calvin_config_runs_the_chain_protocol(monkeypatch, capsys, tmp_path) -> None:
    from vla_gym.eval import calvin

    calls = []

    def fake_evaluate(policy, **kwargs):
        calls.append((policy, kwargs))
        n = kwargs["num_sequences"]
        lengths = [2] * n
        avg_len, rates, per_task = calvin.score(lengths, calvin.get_sequences(n))
        return calvin.CalvinEvalResult(policy.__name__, n, avg_len, rates, per_task, lengths, 1, 1)

    monkeypatch.setattr(calvin, "evaluate", fake_evaluate)
    checkpoint = str(tmp_path / "latest.pt")
    argv = ["eval", "--config", "calvin_d_ppo_flow_cpu", "--checkpoint", checkpoint]
    assert main([*argv, "--episodes", "3"]) == 0
    policy, kwargs = calls[-1]
    assert kwargs["num_sequences"] == 3 and policy.__name__ == checkpoint
    # the config's observation settings, nothing the protocol fixes (it would refuse them)
    assert kwargs["obs_mode"] == "vla" and kwargs["action_chunk"] == 5
    assert not {"max_steps", "max_episode_steps", "scenes", "task"} & set(kwargs)
    out = capsys.readouterr().out
    assert "CALVIN evaluation (scene D)" in out and "avg. len" in out
    metrics = json_line(out)
    assert metrics["protocol"] == "calvin/D"
    assert metrics["eval/avg_len"] == 2.0 and metrics["eval/num_episodes"] == 3.0
    assert [metrics[f"eval/chain_success_{i}"] for i in range(1, 6)] == [1, 1, 0, 0, 0]
    # without --episodes: the config's eval_episodes; the full recipe's 1000 = the protocol
    assert main(argv) == 0
    assert calls[-1][1]["num_sequences"] == load_config("calvin_d_ppo_flow_cpu").env.eval_episodes
    full = ["--config", "calvin_d_ppo_flow", "--checkpoint", checkpoint]
    assert main(["eval", *full, "cluster.component_placement.rollout=cpu"]) == 0
    assert calls[-1][1]["num_sequences"] == calvin.NUM_SEQUENCES


def test_protocol_generic_forces_the_generic_loop(monkeypatch, capsys, tmp_path) -> None:
    calls = []

    def fake_generic(config, checkpoint_path, episodes, device):
        calls.append((config.env.eval_id, episodes))
        return {"eval/success_once": 0.5, "eval/num_episodes": float(episodes)}

    monkeypatch.setattr(evaluate, "evaluate_generic", fake_generic)
    monkeypatch.setattr(evaluate, "run_protocol", lambda *a: pytest.fail("protocol ran"))
    argv = ["eval", "--config", "calvin_d_ppo_flow_cpu", "--checkpoint", str(tmp_path / "x.pt")]
    assert main([*argv, "--protocol", "generic", "--episodes", "4"]) == 0
    assert calls == [("VLA/CALVIN-D-v0", 4)]
    assert json_line(capsys.readouterr().out) == {
        "protocol": "generic",
        "eval/success_once": 0.5,
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

    config, checkpoint = ml45_checkpoint
    capsys.readouterr()
    video = tmp_path / "episode.mp4"
    argv = ["eval", "--config", str(config), "--checkpoint", str(checkpoint)]
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
    assert "Meta-World" not in out  # no protocol report
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
