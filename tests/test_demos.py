"""Demonstration datasets: on-disk format, resumable writing, streaming loader, collection."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import torch

from trainers.collect import env_slice
from trainers.demos import INDEX_FILE, META_FILE, DemoDataset, DemoWriter, Episode

META = {
    "env_id": "VLA/Test-v0",
    "env_kwargs": {},
    "obs_mode": "vla",
    "cameras": {"front": [8, 8], "wrist": [8, 8]},
    "state_dim": 3,
    "action_dim": 2,
}


def make_episode(length: int, offset: float = 0.0, success: bool = True) -> Episode:
    rng = np.random.default_rng(int(offset))
    t = np.arange(length, dtype=np.float32)
    return Episode(
        state=np.stack([t + offset, -t, t * 0 + offset], 1),
        action=np.stack([t / 100 + offset / 1000, -t / 100], 1).astype(np.float32),
        reward=np.ones(length, np.float32),
        images={
            cam: rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8)
            for cam in ("front", "wrist")
        },
        instruction=f"task {int(offset)}",
        success=success,
    )


def test_round_trip_is_lossless_and_documented(tmp_path):
    writer = DemoWriter(tmp_path, META)
    episodes = [make_episode(5, 0.0), make_episode(7, 10.0, success=False)]
    for i, episode in enumerate(episodes):
        writer.write(episode, seed=i)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["format"] == "vla_gym-demos" and meta["version"] == 2
    lines = [json.loads(line) for line in (tmp_path / INDEX_FILE).read_text().splitlines()]
    assert [r["length"] for r in lines] == [5, 7]
    assert [r["success"] for r in lines] == [True, False]
    dataset = DemoDataset(tmp_path, only_success=False)
    assert len(dataset) == 2 and dataset.num_samples == 12
    for i, episode in enumerate(episodes):
        loaded = dataset.episode(i)
        np.testing.assert_array_equal(loaded.state, episode.state)
        np.testing.assert_array_equal(loaded.action, episode.action)
        for cam in ("front", "wrist"):
            np.testing.assert_array_equal(loaded.images[cam], episode.images[cam])
        assert loaded.instructions == episode.instructions
    # only_success (the default) drops the failed episode
    assert len(DemoDataset(tmp_path)) == 1


def test_per_step_instructions_are_stored_as_segments(tmp_path):
    episode = make_episode(6)
    episode.instruction = ["open"] * 2 + ["close"] * 3 + ["open"]
    record = DemoWriter(tmp_path, META).write(episode)
    assert record["instructions"] == ["open", "close", "open"]
    assert record["instruction_starts"] == [0, 2, 5]
    loaded = DemoDataset(tmp_path).episode(0)
    assert loaded.instructions == episode.instruction
    batch, _ = next(DemoDataset(tmp_path).batches(6, chunk=1, shuffle_buffer=1, repeat=False))
    by_step = {
        int(-s[1]): text for s, text in zip(batch["state"], batch["instruction"], strict=True)
    }
    assert [by_step[t] for t in range(6)] == episode.instruction
    with pytest.raises(ValueError, match="6 steps but 2 per-step instructions"):
        DemoWriter(tmp_path, META).write(replace(make_episode(6), instruction=["a", "b"]))


def test_version_1_directories_still_load(tmp_path):
    """A directory written before per-step instructions: one sentence per episode."""
    DemoWriter(tmp_path, META).write(make_episode(4, 0.0))
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "version": 1}))
    record = json.loads((tmp_path / INDEX_FILE).read_text())
    del record["instructions"], record["instruction_starts"]
    (tmp_path / INDEX_FILE).write_text(json.dumps({**record, "instruction": "old task"}) + "\n")
    dataset = DemoDataset(tmp_path)
    assert dataset.episode(0).instructions == ["old task"] * 4
    obs, _ = next(dataset.batches(4, chunk=1, repeat=False))
    assert obs["instruction"] == ["old task"] * 4
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(ValueError, match="version 9"):
        DemoDataset(tmp_path)


def test_images_are_compressed(tmp_path):
    writer = DemoWriter(tmp_path, META)
    episode = make_episode(50)
    episode.images = {cam: np.zeros((50, 8, 8, 3), np.uint8) for cam in ("front", "wrist")}
    record = writer.write(episode)
    raw = sum(im.nbytes for im in episode.images.values())
    assert (tmp_path / record["file"]).stat().st_size < raw / 5


def test_writer_resumes_and_ignores_unfinished_files(tmp_path):
    writer = DemoWriter(tmp_path, META)
    writer.write(make_episode(4, 0.0))
    # An interruption: a stray temp file and a half-written index line.
    (tmp_path / ".episode_000001.npz.tmp").write_bytes(b"garbage")
    with open(tmp_path / INDEX_FILE, "a") as handle:
        handle.write('{"file": "episode_0000')
    resumed = DemoWriter(tmp_path, META)
    assert resumed.num_episodes == 1
    assert len(DemoDataset(tmp_path)) == 1


def test_writer_refuses_a_different_env(tmp_path):
    DemoWriter(tmp_path, META)
    with pytest.raises(ValueError, match="action_dim"):
        DemoWriter(tmp_path, {**META, "action_dim": 7})


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="collect"):
        DemoDataset(tmp_path)
    DemoWriter(tmp_path, META).write(make_episode(3, success=False))
    with pytest.raises(ValueError, match="no successful episodes"):
        DemoDataset(tmp_path)


def test_streamed_batches_cover_every_step_with_padded_chunks(tmp_path):
    writer = DemoWriter(tmp_path, META)
    episodes = [make_episode(5, 0.0), make_episode(3, 10.0)]
    for episode in episodes:
        writer.write(episode)
    dataset = DemoDataset(tmp_path)
    batches = list(dataset.batches(3, chunk=4, shuffle_buffer=4, seed=1, repeat=False))
    assert [len(actions) for _, actions in batches] == [3, 3, 2]
    obs, actions = batches[0]
    assert set(obs) == {"images", "state", "instruction"}
    assert obs["images"]["front"].dtype == torch.uint8 and obs["images"]["front"].shape == (
        3,
        8,
        8,
        3,
    )
    assert actions.shape == (3, 4, 2)
    # Every step appears once, with its chunk of the next 4 actions (last action repeated).
    seen = {}
    for obs, actions in batches:
        for state, chunk in zip(obs["state"], actions, strict=True):
            seen[(float(state[0]), float(state[1]))] = chunk.numpy()
    assert len(seen) == 8
    for episode in episodes:
        n = len(episode)
        for t in range(n):
            expected = episode.action[[min(t + j, n - 1) for j in range(4)]]
            np.testing.assert_array_equal(seen[(float(episode.state[t, 0]), -float(t))], expected)


def test_chunk_of_one_matches_a_flat_action_space(tmp_path):
    DemoWriter(tmp_path, META).write(make_episode(4))
    _, actions = next(DemoDataset(tmp_path).batches(4, chunk=1, repeat=False))
    assert actions.shape == (4, 2)


def test_shuffle_order_depends_on_seed_and_stream_repeats(tmp_path):
    writer = DemoWriter(tmp_path, META)
    for i in range(4):
        writer.write(make_episode(6, 10.0 * i))
    dataset = DemoDataset(tmp_path)

    def order(seed: int) -> list[float]:
        stream = dataset.samples(1, shuffle_buffer=8, seed=seed)
        return [float(next(stream)[0]["state"][0]) for _ in range(60)]  # > 24: repeats

    assert order(0) == order(0)
    assert order(0) != order(1)


def test_state_statistics(tmp_path):
    writer = DemoWriter(tmp_path, META)
    episodes = [make_episode(5, 0.0), make_episode(3, 10.0)]
    for episode in episodes:
        writer.write(episode)
    mean, std = DemoDataset(tmp_path).state_statistics()
    states = np.concatenate([e.state for e in episodes])
    np.testing.assert_allclose(mean, states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, states.std(0), rtol=1e-4, atol=1e-5)
    actions = np.concatenate([e.action for e in episodes])
    np.testing.assert_array_equal(DemoDataset(tmp_path).actions(), actions)


def test_env_slice_respects_info_masks():
    infos = {
        "success": np.array([True, False]),
        "_success": np.array([True, True]),
        "block_pos": np.arange(6.0).reshape(2, 3),
        "_block_pos": np.array([False, True]),
        "nested": {"a": np.array([1, 2]), "_a": np.array([True, True])},
    }
    first, second = env_slice(infos, 0), env_slice(infos, 1)
    assert first == {"success": True, "nested": {"a": 1}}
    np.testing.assert_array_equal(second["block_pos"], [3.0, 4.0, 5.0])


@pytest.mark.slow
def test_collect_writes_successful_expert_demos_and_resumes(tmp_path):
    import vla_gym  # noqa: F401  (before mujoco: it selects the headless EGL backend)

    pytest.importorskip("mujoco")
    pytest.importorskip("gym_hil")
    from trainers.collect import collect

    kwargs = {"image_size": 32}
    collect(
        "VLA/PandaPickCubeVision-v0", 2, str(tmp_path), num_envs=2, env_kwargs=kwargs, verbose=False
    )
    dataset = DemoDataset(tmp_path, only_success=False)
    assert len(dataset) == 2
    assert all(r["success"] for r in dataset.records)  # the scripted expert solves it
    episode = dataset.episode(0)
    assert episode.images["front"].shape[1:] == (32, 32, 3)
    assert episode.state.shape[1] == 7 and episode.action.shape[1] == 4
    assert np.abs(episode.action).max() <= 1.0
    assert episode.instructions == ["pick up the cube"] * len(episode)
    assert dataset.meta["fps"] == 50
    assert dataset.meta["cameras"] == {"front": [32, 32], "wrist": [32, 32]}
    # Asking for more continues the same directory.
    collect(
        "VLA/PandaPickCubeVision-v0", 3, str(tmp_path), num_envs=1, env_kwargs=kwargs, verbose=False
    )
    assert len(DemoDataset(tmp_path, only_success=False)) == 3


@pytest.mark.slow
def test_collect_with_action_noise_stores_the_clean_expert_labels(tmp_path):
    import vla_gym  # noqa: F401  (before mujoco: it selects the headless EGL backend)

    pytest.importorskip("mujoco")
    pytest.importorskip("gym_hil")
    from trainers.collect import collect

    kwargs = {"image_size": 32}
    collect(
        "VLA/PandaPickCube-v0",
        1,
        str(tmp_path / "clean"),
        num_envs=1,
        env_kwargs={**kwargs, "obs_mode": "flat"},
        verbose=False,
    )
    collect(
        "VLA/PandaPickCube-v0",
        1,
        str(tmp_path / "noisy"),
        num_envs=1,
        env_kwargs={**kwargs, "obs_mode": "flat"},
        action_noise=0.1,
        verbose=False,
    )
    clean = DemoDataset(tmp_path / "clean", only_success=False).episode(0)
    noisy = DemoDataset(tmp_path / "noisy", only_success=False).episode(0)
    # Same seed: the first observation and label agree; the perturbed run then diverges.
    np.testing.assert_allclose(clean.state[0], noisy.state[0])
    np.testing.assert_allclose(clean.action[0], noisy.action[0])
    assert not np.allclose(clean.state[: len(noisy)][1:5], noisy.state[1:5])
    assert np.abs(noisy.action).max() <= 1.0
    # The grasp command is never perturbed: labels stay the expert's -1 / +1.
    assert set(np.unique(noisy.action[:, -1])) <= {-1.0, 1.0}


def test_collected_calvin_chain_labels_each_subtask_with_its_instruction(tmp_path):
    """The chain's instruction switches at each solved subtask; so do the stored labels."""
    pytest.importorskip("pybullet")
    import gymnasium as gym

    from trainers.collect import collect
    from vla_gym.envs.calvin.language import BUILTIN_SENTENCES

    kwargs = {"assets": "builtin", "num_subtasks": 3, "static_size": 32, "gripper_size": 32}
    collect("VLA/CALVIN-D-v0", 1, str(tmp_path), num_envs=1, env_kwargs=kwargs, verbose=False)
    dataset = DemoDataset(tmp_path)  # successful: the expert solved all three subtasks
    record, episode = dataset.records[0], dataset.episode(0)
    env = gym.make("VLA/CALVIN-D-v0", **kwargs)
    _, info = env.reset(seed=record["seed"])
    env.close()
    assert record["instructions"] == [BUILTIN_SENTENCES[task] for task in info["tasks"]]
    # Each subtask's +1 reward lands on its last step; the next instruction starts right after.
    solved_at = np.flatnonzero(episode.reward)
    assert len(solved_at) == 3 and solved_at[-1] == len(episode) - 1
    assert record["instruction_starts"] == [0, *(solved_at[:-1] + 1).tolist()]
    for (start, end), task in zip(pairwise([0, *(solved_at + 1)]), info["tasks"], strict=True):
        assert set(episode.instructions[start:end]) == {BUILTIN_SENTENCES[task]}


def test_collect_cli_passes_expert_kwargs(tmp_path):
    import vla_gym  # noqa: F401  (before mujoco: it selects the headless EGL backend)

    pytest.importorskip("mujoco")
    pytest.importorskip("gym_hil")
    from trainers.collect import main

    common = ["--env", "VLA/PandaPickCube-v0", "--episodes", "1", "--num-envs", "1"]
    main([*common, "--out", str(tmp_path / "default"), "--env-kwargs", "{obs_mode: flat}"])
    slow = ["expert.kwargs.max_speed=0.02", "env.kwargs.obs_mode=flat"]
    main([*common, "--out", str(tmp_path / "slow"), *slow])
    default = DemoDataset(tmp_path / "default", only_success=False).episode(0)
    slow = DemoDataset(tmp_path / "slow", only_success=False).episode(0)
    assert np.linalg.norm(default.action[:, :3], axis=1).max() > 0.5
    assert np.linalg.norm(slow.action[:, :3], axis=1).max() <= 0.2 + 1e-5  # 0.02 m per step
    with pytest.raises(SystemExit, match="env.kwargs.KEY=VALUE or expert.kwargs.KEY=VALUE"):
        main([*common, "--out", str(tmp_path / "bad"), "max_speed=0.02"])
