"""The shared core: spaces, chunk execution, action validation, render quality, registration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_gym
from vla_gym.core import VLAEnv, instruction_space, resolve_render_quality
from vla_gym.core.spaces import chunked_action_space


class CountingEnv(VLAEnv):
    """A simulator-free env: reward = step index, success at ``success_at`` steps."""

    def __init__(self, success_at: int = 1000, **kwargs):
        super().__init__(action_dim=2, state_dim=3, cameras={"cam": (8, 6)}, **kwargs)
        self.instruction = "Put the red block, gently, in the drawer."
        self.success_at = success_at
        self.applied: list[np.ndarray] = []

    def _reset_sim(self, options):
        self.applied = []
        self.offset = float(self.np_random.uniform())

    def _step_sim(self, action):
        self.applied.append(action.copy())
        n = len(self.applied)
        return float(n), n >= self.success_at, False

    def _get_state(self):
        return np.array([len(self.applied), self.offset, 0.0], np.float32)

    def _get_images(self):
        return {"cam": np.full((8, 6, 3), len(self.applied), np.uint8)}


def test_instruction_space_admits_sentences():
    space = instruction_space()
    assert space.contains("Open the drawer, then push the Blue block left!")
    assert space.contains("")
    assert not space.contains("tab\tcharacter")


def test_action_space_shapes():
    assert chunked_action_space(4, 1).shape == (4,)
    assert chunked_action_space(4, 5).shape == (5, 4)
    with pytest.raises(ValueError, match="action_chunk"):
        chunked_action_space(4, 0)


def test_chunk_runs_in_order_and_sums_rewards():
    env = CountingEnv(action_chunk=3, max_episode_steps=100)
    env.reset(seed=0)
    chunk = np.array([[0.1, 0.2], [0.3, 0.4], [2.0, -3.0]], np.float32)
    obs, reward, terminated, truncated, info = env.step(chunk)
    assert reward == 1 + 2 + 3
    np.testing.assert_allclose(info["step_rewards"], [1, 2, 3])
    assert info["executed_steps"] == 3 and info["elapsed_steps"] == 3
    np.testing.assert_allclose(env.applied[2], [1.0, -1.0])  # out-of-range values clipped
    assert not terminated and not truncated
    assert obs["state"][0] == 3 and obs["images"]["cam"].shape == (8, 6, 3)


def test_chunk_stops_at_success_and_truncation():
    env = CountingEnv(success_at=4, action_chunk=5)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros((5, 2)))
    assert (terminated, truncated) == (True, False)
    assert info["executed_steps"] == 4 and reward == 1 + 2 + 3 + 4
    np.testing.assert_allclose(info["step_rewards"], [1, 2, 3, 4, 0])
    assert info["success"] and info["success_once"] and info["is_success"]

    env = CountingEnv(action_chunk=5, max_episode_steps=7)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros((5, 2)))
    assert not (terminated or truncated) and info["executed_steps"] == 5
    _, reward, terminated, truncated, info = env.step(np.zeros((5, 2)))
    assert (terminated, truncated) == (False, True)
    assert info["executed_steps"] == 2 and info["elapsed_steps"] == 7 and reward == 6 + 7
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros((5, 2)))


def test_success_once_is_sticky_without_termination():
    class Flicker(CountingEnv):
        def _step_sim(self, action):
            reward, _, _ = super()._step_sim(action)
            return reward, len(self.applied) == 2, False

    env = Flicker(terminate_on_success=False)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2))[4] for _ in range(3)]
    assert [f["success"] for f in flags] == [False, True, False]
    assert [f["success_once"] for f in flags] == [False, True, True]
    assert not env.reset(seed=0)[1]["success_once"]


@pytest.mark.parametrize(
    "action, problem",
    [
        (np.zeros(3), "shape"),
        (np.zeros((2, 2)), "shape"),
        (np.array([np.nan, 0.0]), "NaN or inf"),
        (np.array([0.0, np.inf]), "NaN or inf"),
        (np.array(["a", "b"]), "numeric"),
        ([0.0, None], "numeric"),
        ([[0.0], [0.0, 1.0]], "array-like|numeric"),
    ],
)
def test_bad_actions_raise_clear_errors_and_leave_env_usable(action, problem):
    env = CountingEnv()
    obs, _ = env.reset(seed=3)
    with pytest.raises(ValueError, match=problem) as excinfo:
        env.step(action)
    assert "CountingEnv" in str(excinfo.value)
    assert env.applied == [] and env.elapsed_steps == 0
    obs2, reward, *_ = env.step(np.zeros(2))
    assert reward == 1.0 and obs2["state"][0] == 1


def test_flat_mode_and_reset_determinism():
    env = CountingEnv(obs_mode="flat")
    assert isinstance(env.observation_space, gym.spaces.Box)
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    c, _ = env.reset(seed=12)
    assert a.dtype == np.float32 and env.observation_space.contains(a)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="obs_mode"):
        CountingEnv(obs_mode="pixels")
    with pytest.raises(ValueError, match="render_mode"):
        CountingEnv(render_mode="human")
    with pytest.raises(ValueError, match="render_quality"):
        resolve_render_quality("ultra")


def test_render_quality_auto_follows_gpu(monkeypatch):
    from vla_gym.core import rendering

    monkeypatch.setattr(rendering, "gpu_available", lambda: False)
    assert rendering.resolve_render_quality("auto") == "fast"
    monkeypatch.setattr(rendering, "gpu_available", lambda: True)
    assert rendering.resolve_render_quality(None) == "full"
    assert rendering.resolve_render_quality("fast") == "fast"


def test_every_registered_id_is_in_the_gym_registry():
    ids = vla_gym.registered_ids()
    assert "VLA/PandaPickCube-v0" in ids and "VLA/PandaPickCubeVision-v0" in ids
    for env_id in ids:
        assert env_id in gym.registry, env_id
        assert gym.registry[env_id].max_episode_steps is None  # the env enforces its own limit
