"""VLA/PandaPickCube-v0 and VLA/PandaPickCubeVision-v0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vla_gym
from vla_gym.experts import make_expert

IDS = ["VLA/PandaPickCube-v0", "VLA/PandaPickCubeVision-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env_with_render(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_stable_baselines3_check_env_flat(env_id):
    sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make(env_id, obs_mode="flat")
    assert env.observation_space.shape == (10,)
    sb3_env_checker.check_env(env.unwrapped, warn=True)
    env.close()


def test_prefixed_make_and_observation_schema():
    env = gym.make("vla_gym:VLA/PandaPickCubeVision-v0", image_size=64)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"images", "state", "instruction"}
    assert {k: v.shape for k, v in obs["images"].items()} == {
        "front": (64, 64, 3),
        "wrist": (64, 64, 3),
    }
    assert obs["state"].shape == (7,) and obs["state"].dtype == np.float32
    assert obs["instruction"] == "pick up the cube"
    assert env.observation_space.contains(obs)
    assert info["render_quality"] in ("fast", "full")
    # The vision state is the 10-D state without the block position.
    flat = gym.make("VLA/PandaPickCube-v0")
    state_obs, state_info = flat.reset(seed=0)
    np.testing.assert_allclose(state_obs["state"][:3], state_info["block_pos"])
    np.testing.assert_allclose(state_obs["state"][3:], obs["state"], atol=1e-6)
    env.close()
    flat.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_observations(env_id):
    env = gym.make(env_id, image_size=48)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (5, 4)).astype(np.float32)

    def rollout(seed):
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for action in actions:
            trace.append(env.step(action)[0])
        return trace

    first, second, other = rollout(7), rollout(7), rollout(8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["state"], b["state"])
        for camera in a["images"]:
            np.testing.assert_array_equal(a["images"][camera], b["images"][camera])
    # The seed places the block, which the front camera sees.
    assert not np.array_equal(first[0]["images"]["front"], other[0]["images"]["front"])
    env.close()


def test_block_placement_follows_the_seed_within_the_range():
    env = gym.make("VLA/PandaPickCube-v0")
    positions = np.array([env.reset(seed=s)[1]["block_pos"] for s in range(40)])
    assert np.all(positions[:, 0] >= 0.25) and np.all(positions[:, 0] <= 0.55)
    assert np.all(np.abs(positions[:, 1]) <= 0.25)
    assert len(np.unique(positions[:, :2], axis=0)) == 40
    env.close()


@pytest.mark.parametrize("chunk", [1, 5])
def test_chunked_actions_move_the_hand_and_report_per_step_rewards(chunk):
    env = gym.make("VLA/PandaPickCube-v0", action_chunk=chunk)
    assert env.action_space.shape == ((4,) if chunk == 1 else (chunk, 4))
    obs, info = env.reset(seed=1)
    start = info["tcp_target"].copy()
    down = np.zeros(env.action_space.shape, np.float32)
    down[..., 2] = -0.5  # 5 cm per step
    obs, reward, terminated, truncated, info = env.step(down)
    assert info["executed_steps"] == chunk
    assert info["step_rewards"].shape == (chunk,)
    assert reward == pytest.approx(float(info["step_rewards"].sum()), rel=1e-6)
    np.testing.assert_allclose(info["tcp_target"][2], max(start[2] - 0.05 * chunk, 0.0), atol=1e-6)
    assert {"success", "success_once", "executed_steps", "step_rewards"} <= set(info)
    env.close()


def test_chunk_stops_at_truncation():
    env = gym.make("VLA/PandaPickCube-v0", action_chunk=5, max_steps=7)
    env.reset(seed=0)
    *_, truncated, info = env.step(np.zeros((5, 4), np.float32))
    assert not truncated
    _, reward, terminated, truncated, info = env.step(np.zeros((5, 4), np.float32))
    assert truncated and not terminated
    assert info["executed_steps"] == 2 and info["elapsed_steps"] == 7
    assert info["step_rewards"][2:].tolist() == [0.0, 0.0, 0.0]
    env.close()


def test_dense_reward_formula():
    env = gym.make("VLA/PandaPickCube-v0")
    _, info = env.reset(seed=2)
    _, reward, *_, info = env.step(np.zeros(4, np.float32))
    distance = np.linalg.norm(info["block_pos"] - info["tcp_pos"])
    lift = np.clip((info["block_pos"][2] - 0.02) / 0.2, 0, 1)
    assert reward == pytest.approx(0.3 * np.exp(-20 * distance) + 0.7 * lift, abs=1e-4)
    env.close()


def _expert_episode(reward_type: str, seed: int = 3) -> tuple[list[float], dict, float]:
    """Per-step rewards of one expert episode, its last info and the dense potential at reset."""
    env = gym.make("VLA/PandaPickCube-v0", obs_mode="flat", reward_type=reward_type)
    expert = make_expert("VLA/PandaPickCube-v0")
    obs, info = env.reset(seed=seed)
    start = 0.3 * np.exp(-20 * np.linalg.norm(info["block_pos"] - info["tcp_pos"]))
    rewards, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
        rewards.append(reward)
        done = terminated or truncated
    env.close()
    return rewards, info, start


def test_sparse_reward_pays_one_at_the_lift_only():
    rewards, info, _ = _expert_episode("sparse")
    assert info["success"] and rewards[-1] == 1.0 and not any(rewards[:-1])


def test_progress_reward_telescopes_to_the_potential_gained():
    rewards, info, start = _expert_episode("progress")
    distance = np.linalg.norm(info["block_pos"] - info["tcp_pos"])
    lift = np.clip((info["block_pos"][2] - 0.02) / 0.2, 0, 1)
    end = 0.3 * np.exp(-20 * distance) + 0.7 * lift
    assert info["success"] and lift == 1.0
    assert sum(rewards) == pytest.approx(end - start, abs=1e-4)
    # the same steps as the dense reward's episode: the reward type changes no dynamics
    assert len(rewards) == len(_expert_episode("dense")[0])


@pytest.mark.parametrize(
    "action, problem",
    [
        (np.zeros(3), "shape"),
        (np.array([0.0, np.nan, 0.0, 0.0]), "NaN or inf"),
        (np.array([0.0, 0.0, -np.inf, 0.0]), "NaN or inf"),
        ("up", "numeric"),
    ],
)
def test_bad_actions_raise_and_leave_the_env_usable(action, problem):
    env = gym.make("VLA/PandaPickCube-v0")
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match=problem) as excinfo:
        env.step(action)
    assert "VLA/PandaPickCube-v0" in str(excinfo.value)
    obs_after, _, _, _, info_after = env.step(np.zeros(4, np.float32))
    assert info_after["elapsed_steps"] == 1
    np.testing.assert_allclose(info_after["tcp_target"], info["tcp_target"], atol=1e-9)
    env.close()


def test_expert_succeeds_on_at_least_95_percent_of_100_seeds():
    env = gym.make("VLA/PandaPickCube-v0", obs_mode="flat")  # no rendering: the expert uses info
    expert = make_expert("VLA/PandaPickCube-v0")
    successes = []
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
            done = terminated or truncated
        successes.append(info["success_once"])
        assert terminated == info["success"]  # success terminates the episode
    assert np.mean(successes) >= 0.95, np.mean(successes)
    env.close()


def test_expert_max_speed_caps_every_move_and_spreads_the_approach():
    env = gym.make("VLA/PandaPickCube-v0", obs_mode="flat")
    moving_steps = {}
    for max_speed in (None, 0.02):
        expert = make_expert("VLA/PandaPickCube-v0", max_speed=max_speed)
        obs, info = env.reset(seed=3)
        expert.reset()
        done, moving = False, 0
        while not done:
            action = expert.act(obs, info)
            if max_speed is not None:  # action units are 0.1 m
                assert np.linalg.norm(action[:3]) * 0.1 <= max_speed + 1e-6
            moving += np.linalg.norm(action[:2]) > 0.05
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        assert info["success_once"], max_speed
        moving_steps[max_speed] = moving
    assert moving_steps[0.02] >= 2 * moving_steps[None]  # x/y motion over many more steps
    env.close()
    with pytest.raises(ValueError, match="max_speed must be positive"):
        make_expert("VLA/PandaPickCube-v0", max_speed=0.0)


def test_expert_with_chunks_through_the_vision_env():
    env = gym.make("VLA/PandaPickCubeVision-v0", action_chunk=2, image_size=32)
    expert = vla_gym.make_expert("VLA/PandaPickCubeVision-v0", action_chunk=2)
    obs, info = env.reset(seed=5)
    done = False
    while not done:
        action = expert.act(obs, info)
        assert action.shape == (2, 4)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    assert info["success_once"]
    env.close()


@pytest.mark.parametrize("quality", ["fast", "full"])
def test_fast_and_full_render_produce_real_images(quality):
    env = gym.make("VLA/PandaPickCubeVision-v0", render_quality=quality, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert info["render_quality"] == quality
    for camera, image in obs["images"].items():
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.std() > 5, f"{camera} image is blank under {quality}"
    frame = env.render()
    assert frame.shape == (128, 256, 3)
    env.close()


def test_fast_and_full_images_differ_only_in_quality():
    images = {}
    for quality in ("fast", "full"):
        env = gym.make("VLA/PandaPickCubeVision-v0", render_quality=quality)
        images[quality] = env.reset(seed=0)[0]["images"]["front"].astype(np.float32)
        env.close()
    difference = np.abs(images["fast"] - images["full"]).mean()
    assert 0 < difference < 40  # same scene, different shading


def test_state_env_observes_the_front_camera_and_renders():
    env = gym.make("VLA/PandaPickCube-v0", render_mode="rgb_array", image_size=64)
    obs, _ = env.reset(seed=0)
    assert list(obs["images"]) == ["front"] and obs["state"].shape == (10,)
    assert env.render().shape == (64, 64, 3)
    env.close()


def test_unknown_expert_is_a_clear_error():
    with pytest.raises(ValueError, match="no scripted expert"):
        make_expert("VLA/Unknown-v0")
