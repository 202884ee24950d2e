"""Scripted CALVIN experts: measured success from valid start states (single-task resets)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import SHARED_DIR

import vla_gym  # noqa: F401
from vla_gym.experts import make_expert
from vla_gym.experts.calvin import EXPERT_TASKS

pytest.importorskip("pybullet")

CALVIN_ROOT = SHARED_DIR / "assets" / "calvin"
EPISODES = 5


def success_rate(env, task: str, episodes: int, first_seed: int = 0) -> float:
    expert = make_expert("VLA/CALVIN-D-v0", task=task)
    successes = []
    for seed in range(first_seed, first_seed + episodes):
        obs, info = env.reset(seed=seed, options={"task": task})
        expert.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
        successes.append(bool(info["success_once"]))
    return float(np.mean(successes))


@pytest.fixture(scope="module")
def flat_env():
    env = gym.make("VLA/CALVIN-D-v0", obs_mode="flat", assets="builtin", task="open_drawer")
    yield env
    env.close()


def test_at_least_twenty_tasks_are_scripted():
    assert len(EXPERT_TASKS) >= 20


@pytest.mark.parametrize("task", EXPERT_TASKS)
def test_expert_success_rate_builtin(flat_env, task):
    rate = success_rate(flat_env, task, EPISODES)
    assert rate >= 0.8, f"{task}: expert success {rate:.2f} < 0.8"


@pytest.mark.parametrize(
    "task", ["open_drawer", "move_slider_left", "lift_pink_block_table", "turn_on_led"]
)
def test_expert_success_rate_official_assets(task):
    if not (CALVIN_ROOT / "data").is_dir():
        pytest.skip(f"official CALVIN assets not found at {CALVIN_ROOT}")
    env = gym.make(
        "VLA/CALVIN-D-v0",
        obs_mode="flat",
        assets="official",
        calvin_root=str(CALVIN_ROOT),
        task=task,
    )
    try:
        assert success_rate(env, task, 3) >= 0.8
    finally:
        env.close()


def test_expert_works_with_action_chunks_and_rejects_unknown_tasks():
    env = gym.make(
        "VLA/CALVIN-D-v0", obs_mode="flat", assets="builtin", task="turn_on_led", action_chunk=2
    )
    expert = make_expert("VLA/CALVIN-D-v0", task="turn_on_led", action_chunk=2)
    obs, info = env.reset(seed=0)
    action = expert.act(obs, info)
    assert action.shape == (2, 7) and np.all(np.abs(action) <= 1)
    env.close()
    with pytest.raises(ValueError, match="no CALVIN expert"):
        make_expert("VLA/CALVIN-D-v0", task="fly")
