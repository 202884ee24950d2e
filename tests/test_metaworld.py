"""VLA/MetaWorld-*: IDs, task/trial cycle, observation, action mapping, expert, buckets, eval."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vla_gym
from vla_gym.core.spaces import instruction_space
from vla_gym.envs.metaworld.difficulty import (
    BUCKETS,
    TASK_BUCKET,
    average_of_buckets,
    bucket_means,
)
from vla_gym.envs.metaworld.instructions import INSTRUCTIONS
from vla_gym.envs.metaworld.tasks import (
    ALL_TASKS,
    ML45_TEST_TASKS,
    ML45_TRAIN_TASKS,
    SUITES,
    cycle_position,
    make_suite,
)
from vla_gym.eval.metaworld import env_info, env_quotas, evaluate
from vla_gym.experts import make_expert

metaworld = pytest.importorskip(
    "metaworld", reason="Meta-World is not installed (extra: metaworld)"
)

IDS = {
    "VLA/MetaWorld-MT50-v0": {},
    "VLA/MetaWorld-ML45-Train-v0": {},
    "VLA/MetaWorld-ML45-Test-v0": {},
    "VLA/MetaWorld-v0": {"task": "drawer-open"},
}


def _episodes(env, seed, count):
    """(task, trial, native_obs) of the first ``count`` cycle episodes after reset(seed)."""
    out = []
    for k in range(count):
        _, info = env.reset(seed=seed if k == 0 else None)
        out.append((info["task"], info["trial"], info["native_obs"]))
    return out


# ------------------------------------------------------------------------ registration, checks
def test_ids_are_registered():
    assert set(IDS) <= set(vla_gym.registered_ids())
    assert set(IDS) <= set(gym.registry)


@pytest.mark.parametrize("env_id", list(IDS))
def test_gymnasium_check_env_with_render(env_id):
    env = gym.make(env_id, render_mode="rgb_array", image_size=64, **IDS[env_id])
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_stable_baselines3_check_env_flat():
    sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat")
    assert env.observation_space.shape == (39,)
    sb3_env_checker.check_env(env.unwrapped, warn=True)
    env.close()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="exactly one of suite= .* or task="):
        gym.make("VLA/MetaWorld-v0")
    with pytest.raises(ValueError, match="unknown Meta-World task 'pick-up'"):
        gym.make("VLA/MetaWorld-v0", task="pick-up")
    with pytest.raises(ValueError, match="cameras must be distinct names"):
        gym.make("VLA/MetaWorld-v0", task="reach", cameras=["corner2", "nope"])
    env = gym.make("VLA/MetaWorld-ML45-Test-v0", obs_mode="flat")
    with pytest.raises(ValueError, match="'reach' is not in suite ML45-test"):
        env.reset(options={"task": "reach"})
    with pytest.raises(ValueError, match=r"trial must be an integer in \[0, 20\)"):
        env.reset(options={"task": "door-lock", "trial": 20})
    env.close()


# ------------------------------------------------------------------------ suites and cycle
def test_suites_match_metaworld():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML45_V3

    assert [f"{t}-v3" for t in ALL_TASKS] == list(ALL_V3_ENVIRONMENTS)
    assert {f"{t}-v3" for t in ML45_TEST_TASKS} == set(ML45_V3["test"])
    assert {f"{t}-v3" for t in ML45_TRAIN_TASKS} == set(ML45_V3["train"])
    assert (len(SUITES["MT50"]), len(SUITES["ML45-train"]), len(SUITES["ML45-test"])) == (
        500,
        450,
        100,
    )


def test_cycle_covers_each_task_trial_once_per_env_stride():
    suite = SUITES["MT50"]
    num_envs = 8
    seen = []
    for env_index, quota in enumerate(env_quotas(50, 10, num_envs)):
        seen += [cycle_position(suite, env_index, e, num_envs) for e in range(quota)]
    assert sorted(seen) == sorted((t, i) for t in suite.tasks for i in range(10))
    # Default stride: all trials of one task, then the next task; seed s starts on task s.
    assert [cycle_position(suite, 3, e) for e in (0, 1, 9, 10)] == [
        ("box-close", 0),
        ("box-close", 1),
        ("box-close", 9),
        ("button-press-topdown", 0),
    ]
    # A single task: vector slots (seeds 0, 1, ...) start on different trials.
    single = make_suite(task="reach")
    assert [cycle_position(single, s, 0) for s in range(3)] == [
        ("reach", 0),
        ("reach", 1),
        ("reach", 2),
    ]


def test_a_task_list_is_a_multi_task_subset_cycled_like_mt50():
    tasks = ["reach", "drawer-open-v3", "button-press"]
    suite = make_suite(task=tasks)
    assert suite.tasks == ("reach", "drawer-open", "button-press") and suite.one_hot
    assert len(suite) == 30 and suite.name == "reach+drawer-open+button-press"
    env = gym.make("VLA/MetaWorld-v0", task=tasks, obs_mode="flat")
    # seed s starts on task s (mod 3); the one-hot follows the order given
    obs, info = env.reset(seed=4)
    assert (info["task"], info["trial"]) == ("drawer-open", 1)
    assert obs.shape == (39 + 3,) and obs[39:].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="'push' is not in suite reach\\+drawer-open"):
        env.reset(options={"task": "push"})
    env.close()
    # the same subset through the vector layer: a list kwarg reaches every worker intact
    envs = vla_gym.make_vec("VLA/MetaWorld-v0", 3, backend="sync", task=tasks, image_size=32)
    _, infos = envs.reset(seed=0)
    assert [infos["task"][i] for i in range(3)] == ["reach", "drawer-open", "button-press"]
    assert list(envs.get_attr("instruction")) == [INSTRUCTIONS[t] for t in suite.tasks]
    envs.close()
    with pytest.raises(ValueError, match="at least one Meta-World task"):
        make_suite(task=[])
    with pytest.raises(ValueError, match="lists reach more than once"):
        make_suite(task=["reach", "reach-v3"])
    with pytest.raises(ValueError, match="unknown Meta-World task 'pick-up'"):
        make_suite(task=["reach", "pick-up"])


def test_cycle_is_deterministic_with_the_seed():
    env_a = gym.make("VLA/MetaWorld-ML45-Test-v0", obs_mode="flat")
    env_b = gym.make("VLA/MetaWorld-ML45-Test-v0", obs_mode="flat")
    first = _episodes(env_a, seed=21, count=3)
    second = _episodes(env_b, seed=21, count=3)
    suite = SUITES["ML45-test"]
    assert [(t, i) for t, i, _ in first] == [cycle_position(suite, 21, e) for e in range(3)]
    for (task_a, trial_a, obs_a), (task_b, trial_b, obs_b) in zip(first, second, strict=True):
        assert (task_a, trial_a) == (task_b, trial_b)
        np.testing.assert_array_equal(obs_a, obs_b)
    # Different trials of a task are different layouts; reseeding restarts the cycle.
    assert not np.allclose(first[0][2], first[1][2])
    again = _episodes(env_a, seed=21, count=1)
    np.testing.assert_array_equal(again[0][2], first[0][2])
    env_a.close()
    env_b.close()


def test_options_select_task_and_trial_without_advancing_the_cycle():
    env = gym.make("VLA/MetaWorld-MT50-v0", obs_mode="flat")
    env.reset(seed=0)
    _, info = env.reset(options={"task": "reach-v3", "trial": 4})
    assert (info["task"], info["trial"]) == ("reach", 4)
    _, info = env.reset()
    assert (info["task"], info["trial"]) == ("assembly", 1)  # the cycle's second episode
    # A trial is the same layout whatever the suite or ID it is reached from.
    single = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat")
    _, single_info = single.reset(options={"trial": 4})
    _, mt50_info = env.reset(options={"task": "reach", "trial": 4})
    np.testing.assert_array_equal(single_info["native_obs"], mt50_info["native_obs"])
    env.close()
    single.close()


# ------------------------------------------------------------------------ observation
def test_instructions_one_sentence_per_task():
    assert set(INSTRUCTIONS) == set(ALL_TASKS)
    sentences = list(INSTRUCTIONS.values())
    assert len(set(sentences)) == 50
    space = instruction_space()
    for sentence in sentences:
        assert space.contains(sentence) and sentence[0].isupper() and sentence.endswith(".")
    env = gym.make("VLA/MetaWorld-v0", task="door-open", image_size=32)
    obs, _ = env.reset(seed=0)
    assert obs["instruction"] == INSTRUCTIONS["door-open"]
    env.close()


def test_observation_schema_state_and_rotation():
    env = gym.make("VLA/MetaWorld-v0", task="reach", cameras=["corner2", "topview"], image_size=48)
    obs, info = env.reset(seed=0)
    assert {k: v.shape for k, v in obs["images"].items()} == {
        "corner2": (48, 48, 3),
        "topview": (48, 48, 3),
    }
    assert env.observation_space.contains(obs)
    assert info["render_quality"] == "fast"  # no GPU here
    np.testing.assert_allclose(obs["state"], info["native_obs"][:4], atol=1e-6)
    upright = gym.make("VLA/MetaWorld-v0", task="reach", image_size=48, rotate_images=False)
    raw, _ = upright.reset(seed=0)
    np.testing.assert_array_equal(obs["images"]["corner2"], np.rot90(raw["images"]["corner2"], 2))
    assert obs["images"]["corner2"].std() > 10  # a real picture, not a blank frame
    env.close()
    upright.close()


def test_flat_observation_goal_and_one_hot():
    mt50 = gym.make("VLA/MetaWorld-MT50-v0", obs_mode="flat")
    obs, info = mt50.reset(options={"task": "push", "trial": 0})
    assert obs.shape == (89,)
    np.testing.assert_allclose(obs[:39], info["native_obs"], atol=1e-6)
    assert obs[39:].argmax() == ALL_TASKS.index("push") and obs[39:].sum() == 1
    ml45 = gym.make("VLA/MetaWorld-ML45-Train-v0", obs_mode="flat")
    obs, info = ml45.reset(options={"task": "push", "trial": 0})
    assert obs.shape == (39,) and not obs[36:].any()  # goal hidden, as in Meta-World's ML
    assert np.abs(info["native_obs"][36:]).sum() > 0  # but the expert still sees it
    mt50.close()
    ml45.close()


# ------------------------------------------------------------------------ action mapping
def test_action_moves_the_hand_by_the_known_delta():
    env = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat")
    for axis, sign in ((0, 1.0), (1, -1.0), (2, 1.0)):
        obs, _ = env.reset(seed=0)
        native = env.unwrapped._native  # Meta-World's env: its mocap target is the command
        hand0, mocap0 = obs[:3].copy(), native.data.mocap_pos[0].copy()
        action = np.zeros(4, np.float32)
        action[axis] = 2.0 * sign  # clipped to +-1: 1 cm per step
        for _ in range(5):
            env.step(action)
        expected = np.zeros(3)
        expected[axis] = 0.05 * sign
        np.testing.assert_allclose(native.data.mocap_pos[0] - mocap0, expected, atol=1e-9)
        for _ in range(15):  # let the hand catch up with its target
            obs, *_ = env.step(np.zeros(4, np.float32))
        np.testing.assert_allclose(obs[:3] - hand0, expected, atol=4e-3)
    # Grip: +1 closes the fingers, -1 opens them (state[3] is the opening).
    obs, _ = env.reset(seed=0)
    for _ in range(15):
        closed, *_ = env.step(np.array([0, 0, 0, 1], np.float32))
    for _ in range(30):
        opened, *_ = env.step(np.array([0, 0, 0, -1], np.float32))
    assert obs[3] > 0.95 and closed[3] < 0.4 and opened[3] > 0.95
    env.close()


def test_sparse_reward_success_termination_and_step_limit():
    env = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat", max_steps=7)
    obs, info = env.reset(seed=0)
    for _ in range(7):
        obs, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        assert reward == 0.0 and not terminated and not info["success_once"]
    assert truncated and info["elapsed_steps"] == 7
    env.close()
    expert = make_expert("VLA/MetaWorld-v0", task="reach", action_chunk=4)
    env = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat", action_chunk=4)
    obs, info = env.reset(seed=0)
    rewards = []
    for _ in range(25):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and info["success"] and info["success_once"]
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0  # one success step, then the chunk stops
    assert info["executed_steps"] <= 4
    env.close()


def test_dense_reward_is_metaworlds_shaped_reward_over_ten():
    expert = make_expert("VLA/MetaWorld-v0", task="reach")
    env = gym.make("VLA/MetaWorld-v0", task="reach", obs_mode="flat", reward_type="dense")
    obs, info = env.reset(seed=0)
    native = env.unwrapped._native
    rewards = []
    for _ in range(100):
        action = expert.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        native_action = np.clip(action, -1, 1).astype(np.float64)
        expected, _ = native.evaluate_state(info["native_obs"], native_action)
        assert reward == pytest.approx(expected / 10)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and info["success"]  # success still ends the episode
    assert min(rewards) >= 0 and max(rewards) <= 1 and rewards[-1] > rewards[0]
    env.close()
    with pytest.raises(ValueError, match="reward_type must be one of"):
        gym.make("VLA/MetaWorld-v0", task="reach", reward_type="shaped")


# ------------------------------------------------------------------------ buckets and eval
def test_difficulty_buckets_and_average_of_bucket_means():
    assert [len(BUCKETS[b]) for b in ("easy", "medium", "hard", "very hard")] == [28, 11, 6, 5]
    assert sorted(TASK_BUCKET) == sorted(ALL_TASKS)
    per_task = {task: 1.0 if TASK_BUCKET[task] == "easy" else 0.0 for task in ALL_TASKS}
    per_task["push"] = 0.6  # one hard task
    means = bucket_means(per_task)
    assert means == pytest.approx({"easy": 1.0, "medium": 0.0, "hard": 0.1, "very hard": 0.0})
    assert average_of_buckets(per_task) == pytest.approx(1.1 / 4)
    assert np.mean(list(per_task.values())) == pytest.approx(28.6 / 50)  # not the same thing
    # ML45 test has no very-hard task: that bucket is left out of the average.
    ml45 = {"bin-picking": 0.5, "box-close": 1.0, "hand-insert": 0.0, "door-lock": 1.0}
    assert bucket_means(ml45) == pytest.approx({"easy": 1.0, "medium": 0.75, "hard": 0.0})
    assert average_of_buckets(ml45) == pytest.approx(1.75 / 3)
    with pytest.raises(ValueError, match="without a difficulty bucket"):
        bucket_means({"juggle": 1.0})


def test_env_info_slices_a_vector_info_dict():
    infos = {
        "task": np.array(["reach", "push"], dtype=object),
        "_task": np.array([True, True]),
        "extra": np.array([0, 5]),
        "_extra": np.array([False, True]),
    }
    assert env_info(infos, 0) == {"task": "reach"}
    assert env_info(infos, 1) == {"task": "push", "extra": 5}


def test_expert_evaluation_through_the_vector_env():
    """The whole protocol on ML45-test with one trial per task (the full MT50 run: RESULTS.md)."""
    result = evaluate(
        "expert",
        "ML45-test",
        num_envs=2,
        num_trials=1,
        max_steps=200,
        backend="sync",
        obs_mode="flat",
    )
    assert result.episodes == 5
    assert result.details["episodes_per_task"] == dict.fromkeys(ML45_TEST_TASKS, 1)
    buckets = result.details["buckets"]
    assert set(buckets) == {"easy", "medium", "hard"}
    assert result.score == result.metrics["success"] >= 0.8
    assert result.score == pytest.approx(np.mean([result.metrics[b] for b in buckets]))
