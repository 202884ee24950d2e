"""`vla_gym.eval`: one policy contract, one result type and the registry, on every benchmark."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import SHARED_DIR

import vla_gym.eval
from vla_gym.eval.envs import trials_per_task
from vla_gym.eval.progress import progress_enabled

LIBERO_ASSETS = SHARED_DIR / "assets" / "libero"


class TinyPolicy:
    """Holds still (gripper open) and records what the protocol hands it."""

    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        self.num_envs = envs.num_envs
        self.action = np.zeros(envs.action_space.shape, np.float32)
        self.action[..., -1] = -1.0
        self.steps = 0
        self.ended: list[int] = []

    def act(self, obs, infos) -> np.ndarray:
        assert isinstance(infos, list) and len(infos) == self.num_envs
        assert all(isinstance(info, dict) for info in infos)
        self.steps += 1
        return self.action.copy()

    def episode_done(self, env_index: int) -> None:
        assert 0 <= env_index < self.num_envs
        self.ended.append(env_index)


def run_tiny(env_id: str, **kwargs) -> tuple[vla_gym.eval.EvalResult, TinyPolicy]:
    built: list[TinyPolicy] = []

    def factory(envs: gym.vector.VectorEnv) -> TinyPolicy:
        built.append(TinyPolicy(envs))
        return built[-1]

    result = vla_gym.eval.run(factory, env_id, backend="sync", **kwargs)
    assert len(built) == 1
    assert isinstance(result, vla_gym.eval.EvalResult) and result.report in str(result)
    assert result.score == result.metrics[result.headline]
    assert result.policy == "factory" and result.env_steps > 0
    return result, built[0]


def result_lines(path: Path, result: vla_gym.eval.EvalResult) -> list[dict]:
    """The JSON lines an evaluation appended, each naming its protocol and env."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(line["protocol"] == result.protocol for line in lines)
    assert all(line["env_id"] == result.env_id for line in lines)
    return lines


BAR = "%|"  # in every tqdm bar line


def test_progress_auto_needs_a_terminal_outside_ci(monkeypatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled(None) and progress_enabled(True) and not progress_enabled(False)
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled(None) and progress_enabled(True)
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress_enabled(None)


# ------------------------------------------------------------------------------ registry
@pytest.mark.parametrize(
    ("env_id", "name", "evaluated_on"),
    [
        ("VLA/CALVIN-D-v0", "calvin/D", "VLA/CALVIN-D-v0"),
        ("VLA/CALVIN-ABC-v0", "calvin/D", "VLA/CALVIN-D-v0"),  # always scene D
        ("VLA/MetaWorld-MT50-v0", "metaworld/MT50", "VLA/MetaWorld-MT50-v0"),
        ("VLA/MetaWorld-ML45-Test-v0", "metaworld/ML45-test", "VLA/MetaWorld-ML45-Test-v0"),
        ("VLA/MetaWorld-ML45-Train-v0", "metaworld/ML45-train", "VLA/MetaWorld-ML45-Train-v0"),
        ("VLA/LIBERO-10-v0", "libero/10", "VLA/LIBERO-10-v0"),
        ("VLA/LIBERO-Spatial-v0", "libero/spatial", "VLA/LIBERO-Spatial-v0"),
        ("VLA/MetaWorld-v0", "generic", "VLA/MetaWorld-v0"),  # one task: generic
        ("VLA/PandaPickCube-v0", "generic", "VLA/PandaPickCube-v0"),
        ("VLA/Behavior-v0", "generic", "VLA/Behavior-v0"),
    ],
)
def test_protocol_for_each_id(env_id: str, name: str, evaluated_on: str) -> None:
    protocol = vla_gym.eval.protocol_for(env_id)
    assert (protocol.name, protocol.env_id) == (name, evaluated_on)
    assert vla_gym.eval.generic_protocol(env_id).name == "generic"


def test_registry_covers_registered_ids_and_refuses_unknown_ones() -> None:
    table = vla_gym.eval.protocols()
    assert set(table) <= set(gym.registry)
    assert {p.benchmark for p in table.values()} == {"calvin", "metaworld", "libero"}
    with pytest.raises(ValueError, match="unknown env ID 'VLA/Nope-v0'"):
        vla_gym.eval.protocol_for("VLA/Nope-v0")
    calvin = vla_gym.eval.protocol_for("VLA/CALVIN-D-v0")
    assert calvin.usable_kwargs({"max_steps": 5, "obs_mode": "vla"}) == {"obs_mode": "vla"}


@pytest.mark.parametrize(
    ("episodes", "num_tasks", "full", "trials"),
    [(5, 5, 20, 1), (7, 5, 20, 2), (10_000, 5, 20, 20), (1, 50, 10, 1), (500, 50, 10, 10)],
)
def test_episode_budget_becomes_trials_per_task(episodes, num_tasks, full, trials) -> None:
    assert trials_per_task(episodes, num_tasks, full) == trials


def test_bad_policies_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="trainers eval --checkpoint"):
        vla_gym.eval.run("runs/x.pt", "VLA/PandaPickCube-v0", episodes=1, backend="sync")

    class NoHook:
        def act(self, obs, infos):
            return np.zeros((1, 4), np.float32)

    with pytest.raises(TypeError, match="episode_done"):
        vla_gym.eval.run(NoHook(), "VLA/PandaPickCube-v0", episodes=1, backend="sync")


def test_vla_gym_never_imports_the_trainer() -> None:
    code = (
        "import sys, vla_gym.eval, vla_gym.eval.calvin, vla_gym.eval.metaworld, "
        "vla_gym.eval.libero, vla_gym.eval.generic, vla_gym.eval.__main__\n"
        "vla_gym.eval.protocols()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'trainers'], 'trainers'\n"
        "assert 'torch' not in sys.modules, 'torch'"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)


# ------------------------------------------------- every protocol through the one contract
def test_calvin_chains_through_the_policy_contract(tmp_path, capsys) -> None:
    pytest.importorskip("pybullet", reason="CALVIN needs pybullet")
    from vla_gym.eval.calvin import get_sequences

    path = tmp_path / "calvin.jsonl"
    result, policy = run_tiny(
        "VLA/CALVIN-ABC-v0",
        episodes=1,
        num_envs=1,
        obs_mode="flat",
        assets="builtin",
        progress=True,
        results_path=path,
    )
    # one line per chain, its length as in the result; the bar shows the running avg. len
    lines = result_lines(path, result)
    assert [(line["chain"], line["solved"]) for line in lines] == [(0, 0)]
    assert lines[0]["tasks"] == get_sequences()[0][1]
    err = capsys.readouterr().err
    assert BAR in err and "1/1" in err and "avg_len=0" in err
    assert result.protocol == "calvin/D" and result.headline == "avg_len"
    assert result.episodes == 1 and result.details["chain_lengths"] == [0]
    assert result.metrics["chain_success_1"] == 0.0 and result.score == 0.0
    assert policy.ended == [0] and policy.steps == 360 == result.env_steps  # one failed subtask
    with pytest.raises(ValueError, match="fixes"):
        vla_gym.eval.run("random", "VLA/CALVIN-D-v0", episodes=1, max_steps=5, assets="builtin")


def test_metaworld_suite_through_the_policy_contract(tmp_path, capsys) -> None:
    pytest.importorskip("metaworld", reason="Meta-World not installed")
    path = tmp_path / "metaworld.jsonl"
    path.write_text("")  # lines are appended to what is there
    result, policy = run_tiny(
        "VLA/MetaWorld-ML45-Test-v0",
        episodes=5,
        num_envs=2,
        max_steps=5,
        obs_mode="flat",
        results_path=str(path),
    )
    lines = result_lines(path, result)
    assert sorted(line["task"] for line in lines) == sorted(result.per_task)
    for line in lines:
        assert line["trials"] == 1 and line["successes"] == line["success"]
        assert line["success"] == result.per_task[line["task"]]
    assert BAR not in capsys.readouterr().err  # progress=None: stderr is no terminal
    assert result.protocol == "metaworld/ML45-test" and result.headline == "success"
    assert result.episodes == 5 and len(result.per_task) == 5
    assert result.details["episodes_per_task"] == dict.fromkeys(result.per_task, 1)
    assert result.env_steps == 25 and result.details["max_steps"] == 5
    assert sorted(set(policy.ended)) == [0, 1] and len(policy.ended) >= 5
    assert {"task_mean", "easy", "medium", "hard"} <= set(result.metrics)
    assert "Avg." in result.report


@pytest.mark.skipif(
    importlib.util.find_spec("libero") is None or not LIBERO_ASSETS.is_dir(),
    reason="hf-libero or the offline LIBERO asset pack (../shared/assets/libero) is missing",
)
def test_libero_suite_through_the_policy_contract(tmp_path, capsys) -> None:
    path = tmp_path / "libero.jsonl"
    result, policy = run_tiny(
        "VLA/LIBERO-Goal-v0",
        num_trials=1,
        tasks=[0, 1],
        max_steps=3,
        image_size=16,
        libero_assets=str(LIBERO_ASSETS),
        progress=False,
        results_path=path,
    )
    lines = result_lines(path, result)
    assert sorted(line["task_id"] for line in lines) == [0, 1]
    for line in lines:
        assert (line["trials"], line["successes"]) == (1, 0)
        assert line["success"] == result.per_task[line["task"]] == 0.0
    assert BAR not in capsys.readouterr().err
    assert result.protocol == "libero/goal" and result.headline == "success"
    assert result.details["trials"] == [(0, 0, False), (1, 0, False)]
    assert result.episodes == 2 and result.env_steps == 2 * 3 and result.score == 0.0
    assert sorted(policy.ended) == [0, 1]


def test_generic_protocol_on_panda(tmp_path, capsys) -> None:
    pytest.importorskip("mujoco")
    path = tmp_path / "generic.jsonl"
    result, policy = run_tiny(
        "VLA/PandaPickCube-v0",
        episodes=2,
        num_envs=1,
        max_steps=5,
        seed=3,
        progress=True,
        results_path=path,
    )
    lines = result_lines(path, result)
    assert [line.pop("episode") for line in lines] == [0, 1]
    assert [{k: line[k] for k in result.details["episodes"][0]} for line in lines] == (
        result.details["episodes"]
    )
    err = capsys.readouterr().err
    assert BAR in err and "2/2" in err and "success=0" in err
    assert result.protocol == "generic" and result.headline == "success_once"
    assert result.episodes == 2 and result.metrics["episode_len"] == 5.0
    assert [e["seed"] for e in result.details["episodes"]] == [3, 4]  # one round per episode
    assert policy.steps == 2 * 5 == result.env_steps and policy.ended == [0, 0]
    assert result.metrics["return"] > 0.0  # dense reward


def test_generic_protocol_is_seeded() -> None:
    pytest.importorskip("metaworld", reason="Meta-World not installed")
    kwargs = {"episodes": 2, "backend": "sync", "max_steps": 5, "task": "reach"}
    kwargs |= {"reward_type": "dense", "obs_mode": "flat"}
    first = vla_gym.eval.run("random", "VLA/MetaWorld-v0", seed=7, **kwargs)
    again = vla_gym.eval.run("random", "VLA/MetaWorld-v0", seed=7, **kwargs)
    other = vla_gym.eval.run("random", "VLA/MetaWorld-v0", seed=8, **kwargs)
    assert first.metrics == again.metrics and first.metrics["return"] > 0.0
    assert first.metrics["return"] != other.metrics["return"]


def test_command_line_writes_the_result(tmp_path, capsys) -> None:
    pytest.importorskip("mujoco")
    from vla_gym.eval.__main__ import main

    path, lines = tmp_path / "result.json", tmp_path / "episodes.jsonl"
    argv = ["--env-id", "VLA/PandaPickCube-v0", "--policy", "random", "--episodes", "1"]
    argv += ["--results-jsonl", str(lines), "--progress", "off"]
    assert main([*argv, "--backend", "sync", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["protocol"] == "generic" and result["episodes"] == 1
    captured = capsys.readouterr()
    assert result["report"] in captured.out and BAR not in captured.err
    (line,) = [json.loads(text) for text in lines.read_text().splitlines()]
    assert line["episode"] == 0 and line["seed"] == result["details"]["episodes"][0]["seed"]
