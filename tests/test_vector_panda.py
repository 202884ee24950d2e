"""The vector layer on a real simulator: VLA/PandaPickCubeVision-v0 (MuJoCo, two cameras)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_gym
from vla_gym.vector import BatchedVectorEnv, make_vec

pytest.importorskip("mujoco", reason="VLA/PandaPickCubeVision-v0 needs mujoco (.[panda])")
pytest.importorskip("gym_hil", reason="VLA/PandaPickCubeVision-v0 needs gym-hil (.[panda])")

ENV_ID = "VLA/PandaPickCubeVision-v0"


def test_subproc_matches_sync_and_gymnasium_on_panda():
    kwargs = dict(image_size=64, max_steps=3)
    sync = make_vec(ENV_ID, 2, backend="sync", **kwargs)
    subproc = gym.make_vec(ENV_ID, 2, vectorization_mode="vector_entry_point", **kwargs)
    reference = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID, **kwargs)] * 2)
    try:
        assert isinstance(subproc, BatchedVectorEnv) and subproc.backend == "subproc"
        assert subproc.single_observation_space == reference.single_observation_space
        results = [env.reset(seed=11) for env in (sync, subproc, reference)]
        actions = np.tile(np.array([0.3, -0.2, -0.5, 1.0], np.float32), (2, 1))
        truncated = False
        for _ in range(4):  # crosses the 3-step truncation, so an autoreset happens
            results = [env.step(actions) for env in (sync, subproc, reference)]
            obs = [r[0] for r in results]
            for other in obs[:2]:
                for camera in ("front", "wrist"):
                    np.testing.assert_array_equal(
                        other["images"][camera], obs[2]["images"][camera], err_msg=camera
                    )
                np.testing.assert_array_equal(other["state"], obs[2]["state"])
                assert other["instruction"] == obs[2]["instruction"] == ("pick up the cube",) * 2
            for ours in results[:2]:
                np.testing.assert_array_equal(ours[1], results[2][1])  # rewards
                np.testing.assert_array_equal(ours[3], results[2][3])  # truncations
                assert set(ours[4]) == set(results[2][4])
                np.testing.assert_array_equal(
                    ours[4]["success_once"], results[2][4]["success_once"]
                )
            truncated |= bool(results[2][3].any())
        assert truncated
    finally:
        for env in (sync, subproc, reference):
            env.close()


def test_vla_gym_make_vec_on_panda_reports_rendering_and_worker_facts():
    envs = vla_gym.make_vec(ENV_ID, 2, envs_per_worker=2, image_size=32)
    try:
        obs, infos = envs.reset(seed=0)
        assert obs["images"]["front"].shape == (2, 32, 32, 3)
        assert obs["images"]["front"].std() > 0  # a real rendering, not an empty buffer
        assert infos["render_quality"].tolist() == ["fast", "fast"]
        (worker,) = envs.worker_info()
        assert worker["env_ids"] == [0, 1]
    finally:
        envs.close()
