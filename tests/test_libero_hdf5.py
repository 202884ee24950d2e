"""LIBERO's HDF5 demonstrations: reading, the robomimic-layout writer, conversion, SFT on them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DIR

h5py = pytest.importorskip("h5py")

from trainers.demos import DemoDataset  # noqa: E402
from trainers.libero_hdf5 import (  # noqa: E402
    convert,
    file_info,
    from_env_frames,
    read_libero_hdf5,
    to_env_frames,
    write_libero_hdf5,
)

ROOT = Path(__file__).resolve().parents[1]
ASSETS = SHARED_DIR / "assets" / "libero"
INSTRUCTION = "pick up the black bowl on the stove and place it on the plate"
BDDL = "/somewhere/bddl_files/libero_spatial/pick_up_the_black_bowl_on_the_stove.bddl"


def raw_libero_file(path: Path, lengths=(6, 4), size: int = 8, convention: str = "opengl"):
    """A file in exactly LIBERO's published layout, written with h5py directly.

    ``picture`` is what the camera sees (top row first); robosuite's "opengl" frames, which
    LIBERO stores by default, hold it bottom row first. Its top-left pixel is red.
    """
    rng = np.random.default_rng(0)
    demos = []
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {
                "problem_name": "libero_tabletop_manipulation",
                "domain_name": "robosuite",
                "language_instruction": INSTRUCTION,
            }
        )
        data.attrs["bddl_file_name"] = BDDL
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop"})
        data.attrs["macros_image_convention"] = convention
        for i, length in enumerate(lengths):
            picture = rng.integers(0, 200, (length, size, size, 3), dtype=np.uint8)
            picture[:, 0, 0] = [255, 0, 0]
            stored = picture[:, ::-1] if convention == "opengl" else picture
            demo = data.create_group(f"demo_{i}")
            obs = demo.create_group("obs")
            obs["agentview_rgb"] = stored
            obs["eye_in_hand_rgb"] = stored[..., ::-1]  # another picture: channels swapped
            obs["ee_pos"] = rng.normal(size=(length, 3))
            obs["ee_ori"] = rng.normal(size=(length, 3))
            obs["ee_states"] = np.concatenate([obs["ee_pos"][()], obs["ee_ori"][()]], 1)
            obs["gripper_states"] = rng.normal(size=(length, 2))
            obs["joint_states"] = rng.normal(size=(length, 7))
            demo["actions"] = rng.uniform(-1, 1, (length, 7))
            demo["states"] = rng.normal(size=(length, 40))
            demo["rewards"] = np.eye(length)[-1].astype(np.uint8)
            demo["dones"] = np.eye(length)[-1].astype(np.uint8)
            demo.attrs["num_samples"] = length
            demos.append({"picture": picture, "demo": {k: demo[k][()] for k in ("actions",)}})
        data.attrs["num_demos"] = len(lengths)
    return demos


@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_read_maps_layout_onto_env_observations(tmp_path, convention):
    path = tmp_path / "demo.hdf5"
    written = raw_libero_file(path, convention=convention)
    episodes = list(read_libero_hdf5(path))
    assert [e["name"] for e in episodes] == ["demo_0", "demo_1"]
    with h5py.File(path) as file:
        for episode, source, demo in zip(episodes, written, ("demo_0", "demo_1"), strict=True):
            obs = file["data"][demo]["obs"]
            np.testing.assert_array_equal(
                episode["action"], file["data"][demo]["actions"][()].astype(np.float32)
            )
            expected_state = np.concatenate(
                [obs["ee_pos"][()], obs["ee_ori"][()], obs["gripper_states"][()]], 1
            )
            np.testing.assert_allclose(episode["state"], expected_state.astype(np.float32))
            assert episode["state"].dtype == np.float32 and episode["state"].shape[1] == 8
            # the env (rotate_180=True) shows robosuite's frame turned by 180 degrees
            robosuite_frame = source["picture"][:, ::-1]
            turned = np.rot90(robosuite_frame, 2, axes=(1, 2))
            np.testing.assert_array_equal(episode["images"]["agentview"], turned)
            np.testing.assert_array_equal(episode["images"]["wrist"], turned[..., ::-1])
            assert (episode["images"]["agentview"][:, 0, -1] == [255, 0, 0]).all()
            assert episode["instruction"] == INSTRUCTION and episode["success"]
    # rotate_180=False: robosuite's own frame, bottom row first
    raw = next(read_libero_hdf5(path, rotate_180=False, cameras=["agentview"]))
    np.testing.assert_array_equal(raw["images"]["agentview"], written[0]["picture"][:, ::-1])
    assert list(raw["images"]) == ["agentview"]


def test_file_info_names_suite_and_demos(tmp_path):
    path = tmp_path / "demo.hdf5"
    raw_libero_file(path, lengths=(3, 3, 3))
    info = file_info(path)
    assert info["instruction"] == INSTRUCTION
    assert info["env_id"] == "VLA/LIBERO-Spatial-v0"
    assert info["demos"] == ["demo_0", "demo_1", "demo_2"]


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [
        {
            "state": rng.normal(size=(n, 8)).astype(np.float32),
            "action": rng.uniform(-1, 1, (n, 7)).astype(np.float32),
            "images": {
                "agentview": rng.integers(0, 256, (n, 6, 10, 3), dtype=np.uint8),
                "wrist": rng.integers(0, 256, (n, 6, 10, 3), dtype=np.uint8),
            },
            "reward": np.eye(n)[-1],
        }
        for n in (5, 3)
    ]
    path = tmp_path / "out.hdf5"
    assert write_libero_hdf5(path, episodes, INSTRUCTION, bddl_file_name=BDDL) == 2
    with h5py.File(path) as file:  # LIBERO's names, robosuite's (unturned, flipped) frames
        obs = file["data/demo_1/obs"]
        assert set(obs) >= {
            "agentview_rgb",
            "eye_in_hand_rgb",
            "ee_pos",
            "ee_ori",
            "gripper_states",
        }
        turned_back = np.rot90(episodes[1]["images"]["agentview"], 2, axes=(1, 2))
        np.testing.assert_array_equal(obs["agentview_rgb"][()], turned_back)
        assert json.loads(file["data"].attrs["problem_info"])["language_instruction"] == INSTRUCTION
    for original, read in zip(episodes, read_libero_hdf5(path), strict=True):
        np.testing.assert_array_equal(read["action"], original["action"])
        np.testing.assert_array_equal(read["state"], original["state"])
        for camera in ("agentview", "wrist"):
            np.testing.assert_array_equal(read["images"][camera], original["images"][camera])
        assert read["instruction"] == INSTRUCTION
        np.testing.assert_array_equal(read["reward"], original["reward"])


def test_frame_turns_are_inverse():
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    for convention in ("opengl", "opencv"):
        for rotate in (True, False):
            stored = from_env_frames(frames, convention, rotate)
            np.testing.assert_array_equal(to_env_frames(stored, convention, rotate), frames)
    with pytest.raises(ValueError, match="image convention 'directx'"):
        to_env_frames(frames, "directx")


def test_bad_files_fail_clearly(tmp_path):
    empty = tmp_path / "empty.hdf5"
    with h5py.File(empty, "w") as file:
        file.create_group("other")
    with pytest.raises(ValueError, match="no 'data' group"):
        list(read_libero_hdf5(empty))
    path = tmp_path / "demo.hdf5"
    raw_libero_file(path, lengths=(3,))
    with h5py.File(path, "a") as file:
        del file["data/demo_0/obs/gripper_states"]
    with pytest.raises(ValueError, match=r"demo_0 lacks \['obs/gripper_states'\]"):
        list(read_libero_hdf5(path))
    with pytest.raises(ValueError, match="unknown camera"):
        list(read_libero_hdf5(path, cameras=["front"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert([tmp_path / "missing.hdf5"], tmp_path / "out")


def test_convert_writes_demo_directory_with_per_step_instruction(tmp_path):
    path = tmp_path / "demo.hdf5"
    written = raw_libero_file(path)
    writer = convert([path], tmp_path / "demos")
    assert writer.num_episodes == 2
    dataset = DemoDataset(tmp_path / "demos")
    assert dataset.meta["env_id"] == "VLA/LIBERO-Spatial-v0"
    assert dataset.meta["cameras"] == {"agentview": [8, 8], "wrist": [8, 8]}
    assert (dataset.meta["state_dim"], dataset.meta["action_dim"]) == (8, 7)
    episode = dataset.episode(0)
    np.testing.assert_array_equal(episode.action, written[0]["demo"]["actions"].astype(np.float32))
    turned = np.rot90(written[0]["picture"][:, ::-1], 2, axes=(1, 2))
    np.testing.assert_array_equal(episode.images["agentview"], turned)
    samples = list(dataset.samples(chunk=1, repeat=False))
    assert len(samples) == 10
    assert all(obs["instruction"] == INSTRUCTION for obs, _ in samples)


def test_cli_converts(tmp_path, capsys):
    from trainers.__main__ import main

    path = tmp_path / "demo.hdf5"
    raw_libero_file(path, lengths=(2,))
    assert (
        main(["convert-libero", str(path), "--out", str(tmp_path / "d"), "--cameras", "wrist"]) == 0
    )
    assert "1 episodes (2 steps)" in capsys.readouterr().out
    assert DemoDataset(tmp_path / "d").meta["cameras"] == {"wrist": [8, 8]}


@pytest.mark.usefixtures("one_torch_thread")
def test_sft_runs_on_converted_file(tmp_path):
    import torch
    from gymnasium import spaces

    from trainers.policies.flow import FlowConfig, FlowPolicy
    from trainers.sft import SFTConfig, train_sft

    path = tmp_path / "demo.hdf5"
    raw_libero_file(path, lengths=(6, 5), size=16)
    dataset = DemoDataset(convert([path], tmp_path / "demos").root)
    image = spaces.Box(0, 255, (16, 16, 3), np.uint8)
    obs_space = spaces.Dict(
        {
            "images": spaces.Dict({"agentview": image, "wrist": image}),
            "state": spaces.Box(-np.inf, np.inf, (8,), np.float32),
            "instruction": spaces.Text(128),
        }
    )
    action_space = spaces.Box(-1, 1, (7,), np.float32)
    torch.manual_seed(0)
    policy = FlowPolicy(
        FlowConfig.from_preset("nano", image_size=16, image_patch=4, language="hash"),
        obs_space,
        action_space,
    )
    config = SFTConfig(steps=3, batch_size=4, warmup_steps=1, eval_interval=0, log_interval=1)
    history = train_sft(policy, dataset, config, action_space)
    losses = [h["sft/loss"] for h in history if "sft/loss" in h]
    assert len(losses) == 3 and all(np.isfinite(losses))


needs_libero = pytest.mark.skipif(
    importlib.util.find_spec("libero") is None or not ASSETS.is_dir(),
    reason=f"hf-libero or the offline LIBERO asset pack ({ASSETS}) is missing",
)


@needs_libero
def test_expert_rollout_round_trips_through_libero_layout(tmp_path):
    """A rollout of the project's expert, exported in LIBERO's layout and read back, gives the
    env's own observations; robosuite's raw frame (rotate_180=False) read through the file's
    convention gives the env's turned frame."""
    import gymnasium as gym

    import vla_gym

    env = gym.make(
        "VLA/LIBERO-Object-v0",
        libero_assets=str(ASSETS),
        image_size=16,
        task_id=1,
        max_steps=12,
    )
    expert = vla_gym.make_expert("VLA/LIBERO-Object-v0")
    obs, info = env.reset(seed=0)
    steps = {"state": [], "action": [], "agentview": [], "wrist": []}
    raw_frames = []
    done = False
    while not done:
        action = expert.act(obs, info)
        for key in ("agentview", "wrist"):
            steps[key].append(obs["images"][key])
        steps["state"].append(obs["state"])
        steps["action"].append(action)
        env.unwrapped.rotate_180 = False  # robosuite's own frame of the same state
        raw_frames.append(env.unwrapped._get_images()["agentview"])
        env.unwrapped.rotate_180 = True
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    env.close()
    episode = {
        "state": np.stack(steps["state"]),
        "action": np.stack(steps["action"]),
        "images": {key: np.stack(steps[key]) for key in ("agentview", "wrist")},
    }
    path = tmp_path / "rollout.hdf5"
    write_libero_hdf5(path, [episode], env.unwrapped.instruction)
    with h5py.File(path) as file:  # stored like LIBERO's files: robosuite's raw frames
        np.testing.assert_array_equal(file["data/demo_0/obs/agentview_rgb"][()], raw_frames)
    read = next(read_libero_hdf5(path))
    np.testing.assert_array_equal(read["action"], episode["action"])
    np.testing.assert_array_equal(read["state"], episode["state"])
    np.testing.assert_array_equal(read["images"]["agentview"], episode["images"]["agentview"])
    assert read["instruction"] == "pick up the cream cheese and place it in the basket"
