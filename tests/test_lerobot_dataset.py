"""LeRobotDataset in and out: collect --format lerobot, SFT on a LeRobotDataset, same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from trainers.datasets import load_demos
from trainers.demos import DemoDataset, DemoWriter, Episode
from trainers.sft import SFTConfig, train_sft

pytest.importorskip("ledataset")
from trainers.lerobot_dataset import REPO_ID, LeRobotDemos, LeRobotWriter, _require  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CALVIN = {"assets": "builtin", "num_subtasks": 2, "static_size": 16, "gripper_size": 16}


@pytest.fixture(scope="module")
def lerobot():
    """The lerobot-dataset module (imported once: it takes seconds)."""
    return _require()


@pytest.fixture(scope="module")
def calvin_chain(tmp_path_factory):
    """One CALVIN chain of two subtasks collected in both formats from the same seed: native
    through ``collect()``, LeRobot through the command line (``collect --format lerobot``)."""
    pytest.importorskip("pybullet")
    from trainers.collect import collect, main

    root = tmp_path_factory.mktemp("chain")
    options = {"num_envs": 1, "env_kwargs": CALVIN, "verbose": False}
    collect("VLA/CALVIN-D-v0", 1, str(root / "native"), **options)
    argv = ["--env", "VLA/CALVIN-D-v0", "--episodes", "1", "--num-envs", "1", "--progress", "off"]
    argv += ["--out", str(root / "lerobot"), "--format", "lerobot"]
    assert main([*argv, *(f"env.kwargs.{key}={value}" for key, value in CALVIN.items())]) == 0
    return root


def test_collected_lerobot_dataset_loads_with_the_lerobot_api(lerobot, calvin_chain):
    native = DemoDataset(calvin_chain / "native").episode(0)
    dataset = lerobot.LeRobotDataset(REPO_ID, root=calvin_chain / "lerobot")
    assert dataset.fps == 30 and dataset.num_episodes == 1 and len(dataset) == len(native)
    features = dataset.features
    for camera in ("static", "gripper"):
        assert features[f"observation.images.{camera}"]["dtype"] == "image"
        assert tuple(features[f"observation.images.{camera}"]["shape"]) == (16, 16, 3)
    assert tuple(features["observation.state"]["shape"]) == (15,)
    assert tuple(features["action"]["shape"]) == (7,)
    frames = [dataset[i] for i in range(len(dataset))]
    # Per-frame tasks: the chain's two instructions, switching where the first subtask is solved.
    tasks = [frame["task"] for frame in frames]
    assert tasks == native.instructions and len(set(tasks)) == 2
    assert {int(frame["episode_index"]) for frame in frames} == {0}
    assert [bool(frame["next.done"]) for frame in frames] == [False] * (len(frames) - 1) + [True]
    np.testing.assert_array_equal(
        torch.stack([frame["action"] for frame in frames]).numpy(), native.action
    )
    stats = dataset.meta.stats  # LeRobot's statistics, computed while saving
    np.testing.assert_allclose(stats["action"]["mean"], native.action.mean(0), rtol=1e-4, atol=1e-5)


def test_native_and_lerobot_formats_give_identical_sft_batches(calvin_chain):
    native, lerobot = load_demos(calvin_chain / "native"), load_demos(calvin_chain / "lerobot")
    assert isinstance(lerobot, LeRobotDemos)
    assert {k: lerobot.meta[k] for k in ("cameras", "state_dim", "action_dim", "fps")} == {
        k: native.meta[k] for k in ("cameras", "state_dim", "action_dim", "fps")
    }
    np.testing.assert_array_equal(lerobot.actions(), native.actions())
    for a, b in zip(native.state_statistics(), lerobot.state_statistics(), strict=True):
        np.testing.assert_array_equal(a, b)
    options = {"shuffle_buffer": 16, "seed": 3, "repeat": False}
    pairs = zip(native.batches(8, 4, **options), lerobot.batches(8, 4, **options), strict=True)
    for (obs_a, act_a), (obs_b, act_b) in pairs:
        torch.testing.assert_close(act_a, act_b, rtol=0, atol=0)
        torch.testing.assert_close(obs_a["state"], obs_b["state"], rtol=0, atol=0)
        assert obs_a["instruction"] == obs_b["instruction"]
        for camera in ("static", "gripper"):
            assert torch.equal(obs_a["images"][camera], obs_b["images"][camera])


def test_lerobot_writer_round_trip_and_append(tmp_path):
    meta = {"env_id": "VLA/Test-v0", "obs_mode": "vla", "fps": 10,
            "cameras": {"front": [8, 8]}, "state_dim": 3, "action_dim": 2}  # fmt: skip
    rng = np.random.default_rng(0)

    def episode(length: int, success: bool) -> Episode:
        return Episode(
            state=rng.normal(size=(length, 3)).astype(np.float32),
            action=rng.normal(size=(length, 2)).astype(np.float32),
            reward=np.arange(length, dtype=np.float32),
            images={"front": rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8)},
            instruction=["open"] * 2 + ["close"] * (length - 2),
            success=success,
        )

    episodes = [episode(4, True), episode(5, False)]
    writer = LeRobotWriter(tmp_path / "ds", meta)
    for e in episodes:
        writer.write(e)
    writer.close()
    writer = LeRobotWriter(tmp_path / "ds", meta)  # continues the dataset
    assert writer.num_episodes == 2
    episodes.append(episode(3, True))
    writer.write(episodes[-1])
    writer.close()
    demos = LeRobotDemos(tmp_path / "ds", only_success=False)
    assert [r["length"] for r in demos.records] == [4, 5, 3]
    assert [r["success"] for r in demos.records] == [True, False, True]
    for i, e in enumerate(episodes):
        loaded = demos.episode(i)
        np.testing.assert_array_equal(loaded.images["front"], e.images["front"])
        np.testing.assert_array_equal(loaded.state, e.state)
        np.testing.assert_array_equal(loaded.reward, e.reward)
        assert loaded.instructions == e.instructions
    assert len(LeRobotDemos(tmp_path / "ds")) == 2  # only_success drops the failure
    with pytest.raises(ValueError, match="other features"):
        LeRobotWriter(tmp_path / "ds", {**meta, "action_dim": 7})


def test_sft_trains_on_a_dataset_made_with_the_lerobot_api(lerobot, tmp_path):
    """Not written by this project: other camera name, video-free images, no success flags."""
    from trainers.policies.flow import FlowConfig, FlowPolicy

    features = {
        "observation.images.top": {
            "dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channel"]
        },
        "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
    }  # fmt: skip
    dataset = lerobot.LeRobotDataset.create(
        "someone/recording", fps=15, features=features, root=tmp_path / "rec", use_videos=False
    )
    rng = np.random.default_rng(0)
    for episode in range(2):
        for _ in range(12):
            state = rng.normal(size=3).astype(np.float32)
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            dataset.add_frame(
                {"observation.images.top": image, "observation.state": state,
                 "action": np.tanh(state[:2]), "task": f"task {episode}"}
            )  # fmt: skip
        dataset.save_episode()
    dataset.finalize()

    assert load_demos(tmp_path / "rec").meta["cameras"] == {"top": [16, 16]}  # default mapping
    with pytest.raises(ValueError, match="no feature 'observation.images.front'"):
        LeRobotDemos(tmp_path / "rec", cameras={"front": "observation.images.front"})
    demos = load_demos(tmp_path / "rec", cameras={"front": "observation.images.top"})
    assert len(demos) == 2 and demos.num_samples == 24 and demos.meta["fps"] == 15
    obs_space = spaces.Dict(
        {
            "images": spaces.Dict({"front": spaces.Box(0, 255, (16, 16, 3), np.uint8)}),
            "state": spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "instruction": spaces.Text(64),
        }
    )
    torch.manual_seed(0)
    config = FlowConfig.from_preset("nano", image_size=16, image_patch=2, language="hash")
    action_space = spaces.Box(-1, 1, (2, 2), np.float32)
    policy = FlowPolicy(config, obs_space, action_space)
    sft = SFTConfig(steps=4, batch_size=8, warmup_steps=1, log_interval=2, shuffle_buffer=8)
    history = train_sft(policy, demos, sft, action_space)
    losses = [h["sft/loss"] for h in history if "sft/loss" in h]
    assert len(losses) == 2 and all(np.isfinite(losses))
    mean, _ = demos.state_statistics()
    assert torch.allclose(policy.encoder.state.mean, torch.as_tensor(mean))


def test_load_demos_names_both_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="LeRobotDataset"):
        load_demos(tmp_path)
    DemoWriter(tmp_path / "native", {"env_id": "x", "obs_mode": "flat", "cameras": {},
                                     "state_dim": 1, "action_dim": 1})  # fmt: skip
    with pytest.raises(ValueError, match="LeRobot options do not apply"):
        load_demos(tmp_path / "native", cameras={"front": "observation.images.top"})


def test_video_datasets_are_decoded_per_episode(lerobot, tmp_path):
    """Public LeRobotDatasets store cameras as videos, several episodes per file."""
    features = {
        "observation.images.top": {
            "dtype": "video", "shape": (16, 16, 3), "names": ["height", "width", "channels"]
        },
        "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
    }  # fmt: skip
    dataset = lerobot.LeRobotDataset.create(
        "someone/videos", fps=10, features=features, root=tmp_path / "v", vcodec="h264"
    )
    frames = []
    for episode in range(3):
        for t in range(5 + episode):
            frames.append(np.full((16, 16, 3), 20 * t + 60 * episode, np.uint8))
            dataset.add_frame(
                {"observation.images.top": frames[-1], "observation.state": np.zeros(3, np.float32),
                 "action": np.zeros(2, np.float32), "task": "look"}
            )  # fmt: skip
        dataset.save_episode()
    dataset.finalize()
    demos = LeRobotDemos(tmp_path / "v")
    decoded = np.concatenate([demos.episode(i).images["top"] for i in range(3)])
    assert decoded.shape == (18, 16, 16, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - np.stack(frames)).max() <= 3  # lossy codec
