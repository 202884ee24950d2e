"""Semantics of vla_gym's vector envs (every backend) against Gymnasium's own SyncVectorEnv."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from test_vector_helpers import INSTRUCTIONS, FaultyEnv, ImageEnv

import vla_gym
from vla_gym.vector import EnvError, make_vec

BACKENDS = ["sync", "subproc"]
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


def assert_same(ours, theirs, where="value"):
    """Deep equality of nested dicts/tuples/arrays (object arrays compared element-wise)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (tuple, list)):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, np.ndarray) and theirs.dtype == object:
        assert isinstance(ours, np.ndarray) and ours.shape == theirs.shape, where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours)}"
        assert ours.dtype == theirs.dtype, f"{where}: {ours.dtype} != {theirs.dtype}"
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def image_vec(backend, num_envs=3, **kwargs):
    return make_vec(ImageEnv, num_envs, backend=backend, **kwargs)


def test_spaces_metadata_and_seeded_reset_match_gymnasium(backend):
    envs = image_vec(backend, envs_per_worker=2) if backend != "sync" else image_vec(backend)
    reference = gym.vector.SyncVectorEnv([ImageEnv] * 3)
    try:
        assert envs.num_envs == 3
        assert envs.single_observation_space == ImageEnv().observation_space
        assert envs.observation_space == batch_space(ImageEnv().observation_space, 3)
        assert envs.action_space == batch_space(ImageEnv().action_space, 3)
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        assert envs.metadata["render_fps"] == 10
        obs, infos = envs.reset(seed=7)
        ref_obs, ref_infos = reference.reset(seed=7)
        assert_same(obs, ref_obs, "obs")
        assert_same(infos, ref_infos, "infos")
        assert isinstance(obs["instruction"], tuple)
        assert all(text in INSTRUCTIONS for text in obs["instruction"])
        # env i is seeded with 7 + i: env 1 of a reset with seed 7 equals env 0 with seed 8
        obs8, _ = envs.reset(seed=8)
        np.testing.assert_array_equal(obs8["state"][0], ref_obs["state"][1])
    finally:
        envs.close()
        reference.close()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_autoreset_matches_gymnasium_sync_vector_env(backend, mode):
    envs = image_vec(backend, num_envs=3, autoreset_mode=mode)
    reference = gym.vector.SyncVectorEnv([ImageEnv] * 3, autoreset_mode=mode)
    rng = np.random.default_rng(0)
    try:
        assert_same(envs.reset(seed=3), reference.reset(seed=3), "reset")
        episodes_done = 0
        for t in range(25):
            actions = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
            ours = envs.step(actions)
            theirs = reference.step(actions)
            assert_same(ours, theirs, f"step {t}")
            done = theirs[2] | theirs[3]
            episodes_done += int(done.sum())
            if mode == AutoresetMode.DISABLED and done.any():
                assert_same(
                    envs.reset(options={"reset_mask": done}),
                    reference.reset(options={"reset_mask": done}),
                    f"masked reset {t}",
                )
        assert episodes_done >= 3  # the comparison covered several episode ends
    finally:
        envs.close()
        reference.close()


def test_disabled_mode_refuses_to_step_a_done_env(backend):
    envs = make_vec(
        ImageEnv, 2, backend=backend, autoreset_mode="disabled", max_steps=1
    )  # truncates every step
    try:
        envs.reset(seed=0)
        _, _, _, truncations, _ = envs.step(np.zeros((2, 2), np.float32))
        assert truncations.all()
        with pytest.raises(RuntimeError, match=r"envs \[0, 1\] are done.*reset_mask"):
            envs.step(np.zeros((2, 2), np.float32))
        envs.reset(options={"reset_mask": np.array([True, True])})
        envs.step(np.zeros((2, 2), np.float32))
        with pytest.raises(TypeError, match="reset_mask"):
            envs.reset(options={"reset_mask": [True, False]})
        with pytest.raises(ValueError, match="at least one"):
            envs.reset(options={"reset_mask": np.zeros(2, bool)})
    finally:
        envs.close()


def test_same_step_final_obs_and_new_instruction(backend):
    envs = make_vec(ImageEnv, 2, backend=backend, autoreset_mode="same_step", max_steps=2)
    try:
        obs, _ = envs.reset(seed=1)
        envs.step(np.zeros((2, 2), np.float32))
        obs, _, _, truncations, infos = envs.step(np.zeros((2, 2), np.float32))
        assert truncations.all()
        assert infos["_final_obs"].all()
        final = infos["final_obs"][0]
        assert final["state"][2] == 2.0  # the last step's observation, not the reset one
        assert obs["state"][0][2] != 2.0  # obs is already the next episode's first
        assert infos["phase"].tolist() == ["reset", "reset"]
        assert infos["final_info"]["t"].tolist() == [2, 2]
        assert all(text in INSTRUCTIONS for text in obs["instruction"])
    finally:
        envs.close()


def test_call_get_attr_set_attr_render(backend):
    envs = make_vec(ImageEnv, 3, backend=backend, render_mode="rgb_array")
    try:
        envs.reset(seed=0)
        assert envs.get_attr("label") == ("default",) * 3
        envs.set_attr("label", ["a", "b", "c"])
        assert envs.get_attr("label") == ("a", "b", "c")
        envs.set_attr("label", "same")
        assert envs.get_attr("label") == ("same",) * 3
        with pytest.raises(ValueError, match="one value per env"):
            envs.set_attr("label", ["a"])
        scaled = envs.call("scaled_state", 2.0)
        obs, _ = envs.reset(seed=0)
        for i in range(3):
            np.testing.assert_allclose(scaled[i], obs["state"][i] * 2.0)
        assert envs.call("max_steps") == (5, 5, 5)  # a non-callable attribute is returned
        frames = envs.render()
        assert len(frames) == 3 and frames[0].shape == (8, 8, 3)
    finally:
        envs.close()


def test_send_recv_returns_envs_with_their_ids(backend):
    envs = make_vec(ImageEnv, 4, backend=backend)
    reference = gym.vector.SyncVectorEnv([ImageEnv] * 4)
    try:
        envs.reset(seed=5)
        ref_obs, _ = reference.reset(seed=5)
        actions = np.full((4, 2), 0.25, np.float32)
        ref = reference.step(actions)
        envs.send(actions[[1, 3]], env_ids=[1, 3])
        with pytest.raises(ValueError, match=r"envs \[3\] still have a step in flight"):
            envs.send(actions[[3]], env_ids=[3])
        with pytest.raises(RuntimeError, match="in flight"):
            envs.step(actions)
        envs.send(actions[[0, 2]], env_ids=[0, 2])
        seen = []
        while len(seen) < 4:
            obs, rewards, terminations, truncations, infos = envs.recv()
            ids = infos["env_id"]
            assert list(ids) == sorted(ids)
            seen.extend(ids.tolist())
            np.testing.assert_array_equal(rewards, ref[1][ids])
            np.testing.assert_array_equal(obs["state"], ref[0]["state"][ids])
            np.testing.assert_array_equal(obs["images"]["front"], ref[0]["images"]["front"][ids])
            assert obs["instruction"] == tuple(ref[0]["instruction"][i] for i in ids)
            np.testing.assert_array_equal(infos["t"], np.ones(len(ids), int))
        assert sorted(seen) == [0, 1, 2, 3]
        with pytest.raises(RuntimeError, match="nothing in flight"):
            envs.recv()
        envs.async_reset(seed=5)
        obs, rewards, _, _, infos = envs.recv(min_envs=4)
        assert infos["env_id"].tolist() == [0, 1, 2, 3]
        np.testing.assert_array_equal(obs["state"], ref_obs["state"])
        np.testing.assert_array_equal(rewards, np.zeros(4))
    finally:
        envs.close()
        reference.close()


def test_env_exception_names_env_and_carries_traceback(backend):
    envs = make_vec(FaultyEnv, 3, backend=backend, fault="raise", faulty_seed=12)
    try:
        envs.reset(seed=10)  # env 2 gets seed 12
        envs.step(np.zeros((3, 2), np.float32))
        with pytest.raises(EnvError) as caught:
            envs.step(np.zeros((3, 2), np.float32))
        assert caught.value.env_index == 2
        message = str(caught.value)
        assert "env 2 raised ValueError: boom at step 2" in message
        assert "test_vector_helpers.py" in message and "in step" in message
    finally:
        envs.close()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backend must be one of"):
        make_vec(ImageEnv, 2, backend="threads")
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        make_vec(ImageEnv, 0, backend="sync")
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        make_vec(ImageEnv, 2, backend="sync", autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="devices= and cpu_affinity= pin worker processes"):
        make_vec(ImageEnv, 2, backend="sync", devices="0")
    envs = make_vec(ImageEnv, 2, backend="sync")
    try:
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"actions for 2 envs must have shape \(2, 2\)"):
            envs.step(np.zeros((3, 2), np.float32))
        with pytest.raises(ValueError, match="one seed per env"):
            envs.reset(seed=[1, 2, 3])
        with pytest.raises(ValueError, match=r"env_ids must be in \[0, 2\)"):
            envs.send(np.zeros((1, 2), np.float32), env_ids=[5])
    finally:
        envs.close()
    with pytest.raises(EnvError, match="env 0 raised RuntimeError: cannot build this env"):
        from test_vector_helpers import BrokenConstructorEnv

        make_vec(BrokenConstructorEnv, 2, backend="sync")


def test_gym_make_vec_goes_through_the_vector_entry_point():
    env_id = "VLATest/ImageEnv-v0"
    if env_id not in gym.registry:
        gym.register(
            env_id,
            entry_point="test_vector_helpers:ImageEnv",
            kwargs={"size": 8},
            vector_entry_point=functools.partial(vla_gym.vector.make_vec_entry_point, env_id),
        )
    envs = gym.make_vec(env_id, 2, vectorization_mode="vector_entry_point", backend="sync")
    try:
        assert isinstance(envs, vla_gym.vector.BatchedVectorEnv)
        assert envs.single_observation_space["images"]["front"].shape == (8, 8, 3)
        assert envs.spec.id == env_id
        obs, _ = envs.reset(seed=0)
        assert obs["images"]["wrist"].shape == (2, 8, 8, 3)
    finally:
        envs.close()
    for env_id in vla_gym.registered_ids():  # every vla_gym ID is wired to our entry point
        entry_point = gym.spec(env_id).vector_entry_point
        assert isinstance(entry_point, functools.partial) and entry_point.args == (env_id,)


def test_record_episode_statistics_wrapper(backend):
    envs = make_vec(ImageEnv, 2, backend=backend, max_steps=3)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    try:
        envs.reset(seed=0)
        lengths = []
        for _ in range(8):
            *_, infos = envs.step(np.zeros((2, 2), np.float32))
            if "episode" in infos:
                lengths.extend(infos["episode"]["l"][infos["_episode"]].tolist())
        assert len(lengths) >= 4 and set(lengths) == {3}
    finally:
        envs.close()


def test_record_video_wrapper(backend, tmp_path):
    pytest.importorskip("moviepy", reason="RecordVideo needs moviepy (gymnasium[other])")
    envs = make_vec(ImageEnv, 2, backend=backend, render_mode="rgb_array", max_steps=3)
    envs = gym.wrappers.vector.RecordVideo(
        envs, str(tmp_path), episode_trigger=lambda k: k == 0, video_length=4
    )
    try:
        envs.reset(seed=0)
        for _ in range(6):
            envs.step(np.zeros((2, 2), np.float32))
    finally:
        envs.close()
    assert list(tmp_path.glob("*.mp4")), "RecordVideo wrote no video"


def test_copy_false_returns_views_that_the_next_step_overwrites():
    envs = make_vec(ImageEnv, 2, backend="sync", copy=False)
    try:
        first, _ = envs.reset(seed=0)
        snapshot = first["state"].copy()
        envs.step(np.ones((2, 2), np.float32))
        assert not np.array_equal(first["state"], snapshot)
    finally:
        envs.close()


@pytest.mark.parametrize("backend", ["sync", "subproc"])
def test_observations_are_never_overwritten_while_held_and_not_copied_otherwise(backend):
    envs = make_vec(ImageEnv, 2, backend=backend, max_steps=50)
    ones = np.ones((2, 2), np.float32)
    slots = envs.buffers.obs_slots
    try:
        # kept observations (whole batches, a view, an image) stay intact however many steps
        kept = [envs.reset(seed=0)[0]] + [envs.step(ones)[0] for _ in range(5)]
        snapshots = [o["state"].copy() for o in kept]
        row = envs.step(ones)[0]["state"][1]
        image = envs.step(ones)[0]["images"]["wrist"][0, :2]
        row_kept, image_kept = row.copy(), image.copy()
        for _ in range(4):
            envs.step(ones)
        for obs, snapshot in zip(kept, snapshots, strict=True):
            np.testing.assert_array_equal(obs["state"], snapshot)
        np.testing.assert_array_equal(row, row_kept)
        np.testing.assert_array_equal(image, image_kept)
        # the usual loop (obs = step(...)) gets the shared buffers themselves: no copy made
        del kept, row, image
        obs = envs.step(ones)[0]
        for _ in range(6):
            previous = obs
            obs = envs.step(ones)[0]
            assert any(obs["images"]["front"] is slot[0] for slot in slots)
            assert not np.shares_memory(obs["state"], previous["state"])
    finally:
        envs.close()


def test_restart_on_failure_in_process():
    envs = make_vec(
        functools.partial(FaultyEnv, fault="raise", faulty_seed=1),
        2,
        backend="sync",
        restart_on_failure=True,
    )
    try:
        envs.reset(seed=0)
        envs.step(np.zeros((2, 2), np.float32))
        with pytest.warns(RuntimeWarning, match="restarting worker 0"):
            obs, rewards, _, truncations, infos = envs.step(np.zeros((2, 2), np.float32))
        assert truncations.all() and infos["worker_restarted"].all()
        assert infos["phase"].tolist() == ["reset", "reset"]  # fresh episodes
        assert "t" not in infos  # no step happened in the fresh episodes
    finally:
        envs.close()


def test_instruction_travels_only_when_it_changes():
    from gymnasium.vector import AutoresetMode as Mode
    from test_vector_helpers import NullImageEnv

    from vla_gym.vector.buffers import StepBuffers
    from vla_gym.vector.env_group import EnvGroup
    from vla_gym.vector.layout import SpaceLayout

    group = EnvGroup([lambda: NullImageEnv(size=8)] * 2, 0, Mode.NEXT_STEP)
    obs_layout = SpaceLayout(group.envs[0].observation_space)
    act_layout = SpaceLayout(group.envs[0].action_space, "action")
    group.bind(obs_layout, act_layout, StepBuffers.allocate(obs_layout, act_layout, 2))
    first = group.reset([0, 1], [0, 1], None)
    assert first.texts == {0: ("pick up the cube",), 1: ("pick up the cube",)}
    later = group.step([0, 1])
    assert later.texts == {} and later.is_plain  # the worker answers with a single byte
