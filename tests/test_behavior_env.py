"""BEHAVIOR-1K adapter without Isaac Sim.

Nothing here runs BEHAVIOR. The mapping code (config, observation parsing, action mapping,
success, chunked observation skipping) is tested against ``FakeOmniGibsonEnv``, a small test
double of OmniGibson's env interface (``reset() -> (obs, info)``, ``step(action, get_obs=,
render=) -> (obs, reward, terminated, truncated, info)``, ``get_obs()``, ``close()``) that this
file defines itself; the real simulator is only reached when ISAAC_PATH etc. are set.
"""

from __future__ import annotations

import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vla_gym.envs.behavior.behavior_env import (
    BehaviorUnavailableError,
    build_config,
    missing_requirements,
    parse_observation,
)
from vla_gym.envs.behavior.r1pro import (
    ACTION_HIGH,
    ACTION_LOW,
    ACTIVITIES,
    DEFAULT_STATE_KEYS,
    PROPRIO_SLICES,
    native_action,
)

ENV_ID = "VLA/Behavior-v0"
BASE_CONFIG = {
    "env": {"action_frequency": 30},
    "robots": [{"type": "R1Pro", "obs_modalities": ["rgb"], "sensor_config": {}}],
    "task": {"type": "BehaviorTask", "termination_config": {"max_steps": 500}},
}


class FakeOmniGibsonEnv:
    """Test double of OmniGibson's ``Environment`` (R1 Pro, 256-D proprio, RGBA float frames).

    The proprio vector encodes the step count so tests can tell which step an observation is
    from; ``info["done"]["success"]`` turns true at ``success_at`` steps.
    """

    def __init__(self, config, success_at=None, native_size=(8, 8)):
        self.config = config
        self.success_at = success_at
        self.native_size = native_size
        self.steps = 0
        self.actions = []
        self.observe_flags = []
        self.get_obs_calls = 0
        self.closed = False

    def _obs(self):
        h, w = self.native_size
        frame = np.full((h, w, 4), 0.5, np.float32)
        frame[0, 0, :3] = (1.0, 0.0, 0.25)
        sensors = {
            f"robot_r1:{link}:Camera:0": {"rgb": frame * (i + 1) / 3}
            for i, link in enumerate(("zed_link", "left_realsense_link", "right_realsense_link"))
        }
        proprio = np.arange(256, dtype=np.float32) + 1000 * self.steps
        return {"robot_r1": {**sensors, "proprio": proprio}}

    def reset(self):
        self.steps = 0
        return self._obs(), {}

    def step(self, action, get_obs=True, render=True):
        self.steps += 1
        self.actions.append(np.asarray(action))
        self.observe_flags.append((get_obs, render))
        success = self.success_at is not None and self.steps >= self.success_at
        info = {"done": {"success": success, "termination_conditions": {}}}
        return (self._obs() if get_obs else None), 0.25, success, False, info

    def get_obs(self):
        self.get_obs_calls += 1
        return self._obs(), {}

    def close(self):
        self.closed = True


def make(**kwargs):
    made = {}
    fake_kwargs = kwargs.pop("fake", {})

    def factory(config):
        made["env"] = FakeOmniGibsonEnv(config, **fake_kwargs)
        return made["env"]

    kwargs.setdefault("image_size", 8)
    env = gym.make(ENV_ID, omnigibson_env_factory=factory, base_config=BASE_CONFIG, **kwargs)
    return env, made["env"]


# ----------------------------------------------------- without Isaac Sim / OmniGibson
def test_listed_and_clear_error_without_isaac_sim(monkeypatch):
    if not missing_requirements():
        pytest.skip("this machine has Isaac Sim, OmniGibson and the BEHAVIOR data")
    import vla_gym

    assert ENV_ID in vla_gym.registered_ids() and ENV_ID in gym.registry
    monkeypatch.delenv("ISAAC_PATH", raising=False)
    monkeypatch.delenv("OMNIGIBSON_DATA_PATH", raising=False)
    start = time.perf_counter()
    with pytest.raises(BehaviorUnavailableError) as error:
        gym.make(ENV_ID, activity="turning_on_radio")
    assert time.perf_counter() - start < 2
    message = str(error.value)
    for needle in (
        "ISAAC_PATH",
        "OMNIGIBSON_DATA_PATH",
        "omnigibson",
        'pip install -e ".[behavior]"',
    ):
        assert needle in message


def test_import_does_not_touch_omnigibson():
    code = (
        "import sys, vla_gym; "
        "print('VLA/Behavior-v0' in vla_gym.registered_ids(), 'omnigibson' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_activity_by_name_or_index_and_bad_values():
    assert len(ACTIVITIES) == 50
    env, fake = make(activity=37)
    assert env.unwrapped.activity == "clean_a_trumpet"
    assert fake.config["task"]["activity_name"] == "clean_a_trumpet"
    env, _ = make(activity="turning_on_radio")
    assert env.unwrapped.instruction == "turning on radio"
    with pytest.raises(ValueError, match="activity"):
        make(activity=50)
    with pytest.raises(ValueError, match="unknown BEHAVIOR activity"):
        make(activity="make_tea")
    with pytest.raises(ValueError, match="cameras"):
        make(cameras=("front",))
    with pytest.raises(ValueError, match="state_keys"):
        make(state_keys=("nope",))


# -------------------------------------------------------------- mapping code
def test_config_sets_activity_cameras_proprio_and_limit():
    config = build_config(BASE_CONFIG, "cook_bacon", (224, 224), 2000)
    robot = config["robots"][0]
    assert config["task"]["activity_name"] == "cook_bacon"
    assert config["task"]["termination_config"]["max_steps"] == 2001  # ours truncates first
    assert robot["sensor_config"]["VisionSensor"]["sensor_kwargs"] == {
        "image_height": 224,
        "image_width": 224,
    }
    assert set(robot["obs_modalities"]) == {"rgb", "proprio"}
    assert robot["proprio_obs"] == list(PROPRIO_SLICES)
    assert BASE_CONFIG["task"]["termination_config"]["max_steps"] == 500  # base left untouched


def test_action_mapping_keeps_order_and_native_ranges():
    assert ACTION_LOW.shape == (23,)
    np.testing.assert_allclose(native_action(-np.ones(23)), ACTION_LOW)
    np.testing.assert_allclose(native_action(np.ones(23)), ACTION_HIGH)
    np.testing.assert_allclose(native_action(np.zeros(23)), (ACTION_LOW + ACTION_HIGH) / 2)
    # base (x, y, yaw) first, grippers at 14 and 22
    np.testing.assert_allclose(ACTION_HIGH[:3], [0.75, 0.75, 1.0])
    assert ACTION_HIGH[14] == ACTION_HIGH[22] == 1.0


def test_observation_schema_and_values():
    env, fake = make(image_size=(4, 6))
    obs, info = env.reset(seed=0)
    assert set(obs["images"]) == {"head", "left_wrist", "right_wrist"}
    assert all(img.shape == (4, 6, 3) and img.dtype == np.uint8 for img in obs["images"].values())
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["images"]["head"][0, 0], [85, 0, 21])  # (1, 0, .25) / 3
    expected = np.concatenate(
        [np.arange(*PROPRIO_SLICES[k], dtype=np.float32) for k in DEFAULT_STATE_KEYS]
    )
    np.testing.assert_array_equal(obs["state"], expected)
    assert obs["state"].shape == (39,)
    assert obs["instruction"] == "turning on radio"
    assert info["activity"] == "turning_on_radio"


def test_parse_observation_names_missing_sensor():
    with pytest.raises(KeyError, match="zed_link"):
        parse_observation({"robot_r1": {"proprio": np.zeros(256)}}, {"head": (8, 8)})


def test_actions_reach_the_simulator_mapped_and_in_order():
    env, fake = make()
    env.reset(seed=0)
    action = np.linspace(-1, 1, 23, dtype=np.float32)
    env.step(action)
    np.testing.assert_allclose(fake.actions[-1], native_action(action), rtol=1e-6)
    env.step(np.full(23, 3.0, np.float32))  # clipped to 1 -> the native maximum
    np.testing.assert_allclose(fake.actions[-1], ACTION_HIGH, rtol=1e-6)


def test_only_the_last_step_of_a_chunk_is_observed():
    env, fake = make(action_chunk=4)
    env.reset(seed=0)
    obs, reward, *_, info = env.step(np.zeros((4, 23), np.float32))
    assert fake.observe_flags == [(False, False)] * 3 + [(True, True)]
    assert obs["state"][0] == PROPRIO_SLICES["base_qvel"][0] + 4000  # from step 4
    assert reward == pytest.approx(1.0) and info["executed_steps"] == 4
    assert fake.get_obs_calls == 0

    every, fake_every = make(action_chunk=3, observe_every_step=True)
    every.reset(seed=0)
    every.step(np.zeros((3, 23), np.float32))
    assert fake_every.observe_flags == [(True, True)] * 3


def test_success_from_done_info_ends_the_chunk_and_observes_then():
    env, fake = make(action_chunk=5, fake={"success_at": 2})
    env.reset(seed=0)
    obs, _, terminated, truncated, info = env.step(np.zeros((5, 23), np.float32))
    assert terminated and not truncated
    assert info["success"] and info["success_once"] and info["executed_steps"] == 2
    assert fake.get_obs_calls == 1  # step 2 was not observed: fetched once at the end
    assert obs["state"][0] == PROPRIO_SLICES["base_qvel"][0] + 2000


def test_episode_limit_truncates():
    env, _ = make(max_steps=3)
    env.reset(seed=0)
    for _ in range(2):
        assert not env.step(np.zeros(23, np.float32))[3]
    _, _, terminated, truncated, _ = env.step(np.zeros(23, np.float32))
    assert truncated and not terminated


def test_native_frames_of_another_size_are_resized():
    env, _ = make(image_size=16, fake={"native_size": (32, 32)})
    obs, _ = env.reset(seed=0)
    assert obs["images"]["left_wrist"].shape == (16, 16, 3)


def test_check_env_on_the_double_and_close():
    env, fake = make(render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    flat, _ = make(obs_mode="flat")
    check_env(flat.unwrapped)
    env.close()
    assert fake.closed
