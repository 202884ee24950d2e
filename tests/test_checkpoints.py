"""Checkpoints: safe loading, clear errors, conversion, numbered/best files, eval from them."""

from __future__ import annotations

import json
import os
import pickle
import random

import gymnasium as gym
import numpy as np
import pytest
import torch

from trainers import checkpoint
from trainers.__main__ import main
from trainers.checkpoint import CheckpointError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RunsCode:
    """Unpickling this runs ``os.system`` (a crafted checkpoint)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def crafted_files(tmp_path, marker) -> list:
    """The same payload saved by torch, pickled in torch's legacy protocol and in a recent one
    (which the safe unpickler cannot even parse): (path, the error expected)."""
    payload = {"policy": {}, "config": RunsCode(f"touch {marker}")}
    files = [
        (tmp_path / "crafted.pt", "could run arbitrary code"),
        (tmp_path / "crafted_p2.pt", "could run arbitrary code"),
        (tmp_path / "crafted_p5.pt", "not a readable checkpoint"),
    ]
    torch.save(payload, files[0][0])
    files[1][0].write_bytes(pickle.dumps(payload, protocol=2))
    files[2][0].write_bytes(pickle.dumps(payload, protocol=5))
    return files


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_crafted_checkpoint_is_refused_without_running_anything(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    for path, error in crafted_files(tmp_path, marker):
        with pytest.raises(CheckpointError, match=error):
            checkpoint.load(path)
        with pytest.raises(SystemExit):  # the CLI: a usage error naming the file
            main(["eval", "--checkpoint", str(path)])
        assert str(path) in capsys.readouterr().err
        with pytest.raises(SystemExit):  # converting needs an explicit --trust
            main(["convert-checkpoint", str(path), str(tmp_path / "new.pt")])
        assert "--trust" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "new.pt").exists()


def test_corrupt_and_foreign_files_get_clear_errors(tmp_path) -> None:
    good = checkpoint.save_atomic({"policy": {"w": torch.ones(3)}, "config": {}}, tmp_path / "a.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            checkpoint.load(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.ones(3)}, foreign)  # a bare state_dict: safe but not ours
    with pytest.raises(CheckpointError, match="not a vla_gym trainer checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="carries no config; give one with --config"):
        checkpoint.run_config(checkpoint.load(good), good)
    # a bare state_dict converts, with the config given
    converted = checkpoint.convert(foreign, tmp_path / "c.pt", trust=True, config={"name": "x"})
    state = checkpoint.load(converted)
    assert torch.equal(checkpoint.policy_state(state)["w"], torch.ones(3))
    assert checkpoint.run_config(state) == {"name": "x"}


def test_rng_states_round_trip_as_plain_data(tmp_path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = checkpoint.save_atomic({"policy": {}, "rng": checkpoint.rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.restore_rng(checkpoint.load(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_an_older_pickled_checkpoint_converts_with_trust(tmp_path) -> None:
    """The earlier format: NumPy's RNG state as a legacy tuple, no format marker."""
    np.random.seed(5)
    old = {
        "policy": {"w": torch.arange(4.0)},
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": [],
        },
        "iteration": 7,
        "config": {"name": "old"},
    }
    source = tmp_path / "old.pt"
    torch.save(old, source)
    with pytest.raises(CheckpointError, match="could run arbitrary code"):
        checkpoint.load(source)
    assert main(["convert-checkpoint", str(source), str(tmp_path / "new.pt"), "--trust"]) == 0
    state = checkpoint.load(tmp_path / "new.pt")
    assert state["iteration"] == 7 and state["config"] == {"name": "old"}
    expected = np.random.rand()
    checkpoint.restore_rng(state["rng"])
    np.random.seed(5)
    assert np.random.rand() == expected  # the restored state is the saved one (seed 5)


# ------------------------------------------------------------ a run: latest, numbered, best
TINY_RUN = """\
env:
  id: VLA/MetaWorld-v0
  obs_mode: flat
  num_envs: 2
  backend: sync
  max_episode_steps: 5
  kwargs: {task: reach}
  eval_num_envs: 2
  eval_episodes: 2
algorithm:
  global_batch_size: 10
  micro_batch_size: 5
policy:
  name: mlp
  hidden_sizes: [8]
  value_hidden_sizes: [8]
runner:
  torch_threads: 1
  max_iterations: 3
  save_interval: 2
  eval_interval: 1
  progress_bar: "off"
  best_metric: train/iteration  # known in advance: with min, the first evaluation is best
  best_mode: min
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("metaworld", reason="Meta-World not installed")
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny_run.yaml"
    config.write_text(TINY_RUN)
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--config", str(config), f"runner.log_dir={root}"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "tiny_run" / "checkpoints"


def test_latest_numbered_and_best_checkpoints(run_dir) -> None:
    names = sorted(path.name for path in run_dir.iterdir())
    assert names == ["best.pt", "iter_000002.pt", "latest.pt"]
    iteration = {name: checkpoint.load(run_dir / name)["iteration"] for name in names}
    assert iteration == {"best.pt": 1, "iter_000002.pt": 2, "latest.pt": 3}
    latest = checkpoint.load(run_dir / "latest.pt")
    assert latest["best"] == {"value": 1.0, "iteration": 1}  # kept for resuming
    assert latest["config"]["runner"]["best_metric"] == "train/iteration"


def test_eval_of_an_rl_checkpoint_needs_no_config(run_dir, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run_dir / "best.pt"), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert f"VLA/MetaWorld-v0, policy {run_dir / 'best.pt'}: 3 episodes" in out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["protocol"] == "generic" and metrics["eval/num_episodes"] == 3.0
    assert metrics["eval/episode_len"] == 5.0  # the run's own horizon


def test_eval_of_an_sft_checkpoint_needs_no_config(tmp_path, capsys) -> None:
    pytest.importorskip("mujoco")
    from trainers.collect import collect
    from trainers.config import load_config
    from trainers.demos import DemoDataset
    from trainers.policies import make_policy
    from trainers.sft import SFTConfig, train_sft

    config = load_config("flow_panda_state_ppo_cpu", smoke=True)  # 10-step episodes
    env = config.env
    demo_kwargs = {**env.kwargs, "obs_mode": env.obs_mode}
    collect(env.id, 1, str(tmp_path / "demos"), num_envs=1, env_kwargs=demo_kwargs)
    probe = gym.make(env.id, obs_mode=env.obs_mode, action_chunk=env.action_chunk, **env.kwargs)
    policy = make_policy(config.policy, probe.observation_space, probe.action_space)
    path = tmp_path / "sft" / "latest.pt"
    sft = SFTConfig(steps=2, batch_size=4, warmup_steps=1, save_interval=2, log_interval=1)
    train_sft(
        policy,
        DemoDataset(tmp_path / "demos"),
        sft,
        probe.action_space,
        checkpoint_path=path,
        run_config=config.to_dict(),
    )
    probe.close()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(path), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert f"VLA/PandaPickCube-v0, policy {path}: 1 episodes" in out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["protocol"] == "generic" and metrics["eval/episode_len"] == 10.0
