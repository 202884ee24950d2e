"""CALVIN env: registration, check_env in both asset modes, layout numbers, resets, episodes."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import SHARED_DIR
from gymnasium.utils.env_checker import check_env

import vla_gym  # noqa: F401  (registers the IDs)
from vla_gym.envs.calvin import IDS
from vla_gym.envs.calvin.layout import EVAL_ROBOT_OBS, LAYOUTS, NEUTRAL_TCP_EULER, NEUTRAL_TCP_POS

pytest.importorskip("pybullet")

CALVIN_ROOT = SHARED_DIR / "assets" / "calvin"
SMALL = {"static_size": 48, "gripper_size": 32}


def official_kwargs() -> dict:
    if not (CALVIN_ROOT / "data" / "calvin_table_D").is_dir():
        pytest.skip(f"official CALVIN assets not found at {CALVIN_ROOT}")
    return {"assets": "official", "calvin_root": str(CALVIN_ROOT)}


@pytest.fixture(scope="module")
def env_d():
    env = gym.make("VLA/CALVIN-D-v0", assets="builtin", **SMALL)
    yield env.unwrapped
    env.close()


@pytest.mark.parametrize("mode", ["builtin", "official"])
@pytest.mark.parametrize("env_id", list(IDS))
def test_check_env_every_id(env_id, mode):
    kwargs = {"assets": "builtin"} if mode == "builtin" else official_kwargs()
    env = gym.make(env_id, render_mode="rgb_array", **SMALL, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds of the state are intended
        check_env(env.unwrapped)
    _, info = env.reset(seed=1)
    assert info["asset_mode"] == mode
    assert info["scene"] in env.unwrapped.scenes
    env.close()


def test_flat_mode_passes_check_env():
    env = gym.make(
        "VLA/CALVIN-D-v0", obs_mode="flat", task="open_drawer", assets="builtin", **SMALL
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (15 + 24 + 34,) and obs.dtype == np.float32
    assert obs[39 + 14] == 1.0  # one-hot of open_drawer (index 14 in the task order)
    env.close()


def test_observation_layout_and_neutral_pose(env_d):
    obs, info = env_d.reset(seed=0, options={"state": _state()})
    assert obs["images"]["static"].shape == (48, 48, 3) and obs["images"]["gripper"].shape == (
        32,
        32,
        3,
    )
    assert obs["state"].shape == (15,) and obs["state"].dtype == np.float32
    assert info["robot_obs"].shape == (15,) and info["scene_obs"].shape == (24,)
    np.testing.assert_allclose(info["robot_obs"][:3], NEUTRAL_TCP_POS, atol=2e-4)
    np.testing.assert_allclose(info["robot_obs"][3:6], NEUTRAL_TCP_EULER, atol=2e-4)
    np.testing.assert_allclose(info["robot_obs"][6], 0.08, atol=1e-4)  # fingers open
    np.testing.assert_allclose(info["robot_obs"][7:14], EVAL_ROBOT_OBS[7:14], atol=1e-5)
    assert info["robot_obs"][14] == 1.0


def _state(**overrides) -> dict:
    state = {
        "led": 1,
        "lightbulb": 1,
        "slider": "left",
        "drawer": "open",
        "red_block": "slider_left",
        "blue_block": "table",
        "pink_block": "slider_right",
        "grasped": 0,
    }
    state.update(overrides)
    return state


def test_reset_from_state_round_trips(env_d):
    from vla_gym.envs.calvin.symbolic import state_to_obs

    robot_obs, scene_obs = state_to_obs(_state())
    _, info = env_d.reset(seed=0, options={"robot_obs": robot_obs, "scene_obs": scene_obs})
    # Joints, lights and block poses come back (blocks settle by < 2 mm in the one reset step).
    np.testing.assert_allclose(info["scene_obs"][:6], scene_obs[:6], atol=1e-3)
    for slot in range(3):
        got, want = info["scene_obs"][6 + 6 * slot :][:6], scene_obs[6 + 6 * slot :][:6]
        np.testing.assert_allclose(got[:3], want[:3], atol=3e-3)
        assert abs(np.angle(np.exp(1j * (got[5] - want[5])))) < 0.02
    np.testing.assert_allclose(info["robot_obs"][7:14], robot_obs[7:14], atol=1e-4)
    # Same options twice -> identical observations (the world restores a pristine snapshot).
    again = env_d.reset(seed=3, options={"robot_obs": robot_obs, "scene_obs": scene_obs})[1]
    np.testing.assert_array_equal(again["scene_obs"], info["scene_obs"])


def test_layout_matches_official_yaml():
    yaml = pytest.importorskip("yaml")
    official_kwargs()
    for name, layout in LAYOUTS.items():
        config = yaml.safe_load(
            (CALVIN_ROOT / "conf" / "scene" / f"calvin_scene_{name}.yaml").read_text()
        )
        order = [k.removeprefix("block_") for k in config["objects"]["movable_objects"]]
        assert tuple(order) == layout.block_order
        for colour, spec in config["objects"]["movable_objects"].items():
            assert spec["file"].endswith(
                f"_{layout.block_sizes[colour.removeprefix('block_')]}.urdf"
            )
        for surface, (low, high) in layout.surfaces.items():
            np.testing.assert_allclose(config["surfaces"][surface], [low, high])


def test_builtin_joint_order_and_limits_match_official():
    import pybullet

    official_kwargs()
    from vla_gym.envs.calvin.assets import scene_files

    client = pybullet.connect(pybullet.DIRECT)
    try:
        for name in ("B", "D"):
            joints = []
            for mode, root in (("builtin", None), ("official", CALVIN_ROOT)):
                files = scene_files(LAYOUTS[name], mode, root)
                uid = pybullet.loadURDF(
                    str(files.table),
                    globalScaling=files.scaling,
                    useFixedBase=True,
                    physicsClientId=client,
                )
                info = [pybullet.getJointInfo(uid, j, physicsClientId=client) for j in range(7)]
                joints.append(
                    [(i[1], i[2], round(i[9], 4) if i[2] == 1 else None, i[12]) for i in info]
                )
            assert joints[0] == joints[1]
    finally:
        pybullet.disconnect(client)


def test_chain_episode_rewards_and_instruction_switch(env_d):
    from vla_gym.envs.calvin.symbolic import state_to_obs

    robot_obs, scene_obs = state_to_obs(_state(drawer="closed", slider="right", lightbulb=0))
    tasks = ["open_drawer", "move_slider_left", "turn_on_led", "close_drawer", "turn_on_lightbulb"]
    obs, info = env_d.reset(
        options={"robot_obs": robot_obs, "scene_obs": scene_obs, "tasks": tasks}
    )
    assert info["tasks"] == tuple(tasks) and info["task"] == "open_drawer"
    first = obs["instruction"]
    # Teleport the drawer open: the open_drawer oracle fires on the next step, +1, next task.
    world = env_d.world
    world.p.resetJointState(world.scene.table, world.scene.drawer, 0.2)
    obs, reward, terminated, truncated, info = env_d.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert reward == 1.0 and not terminated and info["subtasks_solved"] == 1
    assert info["task"] == "move_slider_left" and obs["instruction"] != first
    assert not info["success"]


def test_progress_reward_pays_the_potential_change_and_one_per_subtask():
    from vla_gym.envs.calvin.env import PROGRESS_WEIGHT
    from vla_gym.experts import make_expert

    task = "lift_red_block_table"
    env = gym.make(
        "VLA/CALVIN-D-v0",
        assets="builtin",
        obs_mode="flat",
        reward_type="progress",
        num_subtasks=1,
    )
    obs, info = env.reset(seed=3, options={"task": task})
    start = env.unwrapped._progress_potential()
    tcp = env.unwrapped.world.robot.tcp_pose()[0]
    block = env.unwrapped.world.snapshot().blocks["red"].pos
    reach = np.exp(-10 * np.linalg.norm(tcp - block))
    assert start == pytest.approx(PROGRESS_WEIGHT * 0.25 * reach) and 0 < start < 0.125
    expert, total, returns = make_expert("VLA/CALVIN-D-v0", task=task), 0.0, []
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
        total += reward
        returns.append(total)
    # Before the lift succeeds the return is the potential's change, below the 0.5 of a
    # complete grade; the solving step tops it up to exactly one subtask minus the start.
    assert info["subtasks_solved"] == 1 and terminated
    assert max(returns[:-1]) < PROGRESS_WEIGHT and max(returns[:-1]) > 0.1
    assert total == pytest.approx(1.0 - start)
    # Sparse rewards on the same episode: 1 on the solving step only.
    sparse = gym.make("VLA/CALVIN-D-v0", assets="builtin", obs_mode="flat", num_subtasks=1)
    obs, info = sparse.reset(seed=3, options={"task": task})
    expert.reset()
    rewards = []
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = sparse.step(expert.act(obs, info))
        rewards.append(reward)
    assert rewards == [0.0] * (len(returns) - 1) + [1.0]
    with pytest.raises(ValueError, match="reward_type"):
        gym.make("VLA/CALVIN-D-v0", assets="builtin", reward_type="dense")
    env.close()
    sparse.close()


def test_chain_fails_after_steps_per_subtask():
    env = gym.make("VLA/CALVIN-D-v0", assets="builtin", steps_per_subtask=3, **SMALL)
    env.reset(seed=0)
    hold = np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32)
    results = [env.step(hold) for _ in range(3)]
    assert [r[2] for r in results] == [False, False, True]  # the third step ends the chain
    assert results[-1][4]["subtasks_solved"] == 0 and not results[-1][4]["success"]
    env.close()


def test_single_task_mode_and_chunks():
    env = gym.make(
        "VLA/CALVIN-D-v0", assets="builtin", task="close_drawer", action_chunk=4, **SMALL
    )
    obs, info = env.reset(seed=5)
    assert info["tasks"] == ("close_drawer",) and info["scene_obs"][1] > 0.2  # drawer starts open
    assert env.action_space.shape == (4, 7)
    obs, reward, terminated, truncated, info = env.step(np.zeros((4, 7), np.float32))
    assert info["executed_steps"] == 4 and info["elapsed_steps"] == 4 and reward == 0.0
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(7))
    env.close()


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        gym.make("VLA/CALVIN-D-v0", task="fly_away")
    with pytest.raises(ValueError, match="scenes"):
        gym.make("VLA/CALVIN-D-v0", scenes=("E",))
    with pytest.raises(FileNotFoundError, match="not a CALVIN folder"):
        gym.make("VLA/CALVIN-D-v0", calvin_root=str(tmp_path))
    saved = os.environ.pop("VLA_GYM_CALVIN_ROOT", None)
    try:
        with pytest.raises(FileNotFoundError, match="calvin_root"):
            gym.make("VLA/CALVIN-D-v0", assets="official")
        assert gym.make("VLA/CALVIN-D-v0", **SMALL).unwrapped.asset_mode == "builtin"
    finally:
        if saved is not None:
            os.environ["VLA_GYM_CALVIN_ROOT"] = saved


def test_official_instructions_use_validation_sentences():
    kwargs = official_kwargs()
    env = gym.make(
        "VLA/CALVIN-D-v0", task="open_drawer", instructions="official", **kwargs, **SMALL
    )
    obs, _ = env.reset(seed=0)
    assert obs["instruction"] == "pull the handle to open the drawer"
    env.close()
    with pytest.raises(ValueError, match="calvin_root"):
        gym.make("VLA/CALVIN-D-v0", instructions="official", assets="builtin")


def test_light_logic_led_toggles_on_press_and_bulb_follows_switch(env_d):
    env_d.reset(seed=0, options={"state": _state(led=0, lightbulb=0)})
    world = env_d.world
    scene, hold = world.scene, np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32)
    world.p.resetJointState(scene.table, scene.button, 0.018)  # pressed: rising edge
    _, _, _, _, info = env_d.step(hold)
    assert info["scene_obs"][5] == 1  # LED on
    for _ in range(10):  # the button springs back up; releasing does not toggle
        _, _, _, _, info = env_d.step(hold)
    assert info["scene_obs"][2] < 0.01 and info["scene_obs"][5] == 1
    world.p.resetJointState(scene.table, scene.button, 0.018)  # second press: off again
    _, _, _, _, info = env_d.step(hold)
    assert info["scene_obs"][5] == 0
    world.p.resetJointState(scene.table, scene.switch, 0.08)  # switch up: bulb on
    _, _, _, _, info = env_d.step(hold)
    assert info["scene_obs"][4] == 1
    world.p.resetJointState(scene.table, scene.switch, 0.0)  # down: off (a level, not a toggle)
    _, _, _, _, info = env_d.step(hold)
    assert info["scene_obs"][4] == 0


def test_relative_action_scale_and_gripper(env_d):
    _, info = env_d.reset(seed=0, options={"state": _state()})
    start = info["robot_obs"][:3].copy()
    action = np.array([1.0, 0, 0, 0, 0, 0, -1.0], np.float32)
    for _ in range(10):
        _, _, _, _, info = env_d.step(action)
    np.testing.assert_allclose(info["tcp_target"][:3], start + [0.2, 0, 0], atol=1e-3)
    moved = info["robot_obs"][0] - start[0]
    assert 0.15 < moved < 0.21  # ~1.9 cm per step after a short lag
    assert info["robot_obs"][14] == -1.0 and info["robot_obs"][6] < 0.01  # gripper closed


def test_absolute_actions_reach_the_commanded_pose():
    env = gym.make("VLA/CALVIN-D-v0", assets="builtin", action_mode="absolute", obs_mode="flat")
    env.reset(seed=0)
    target = np.array([0.1, -0.1, 0.6])
    low, high = np.array([-0.45, -0.45, 0.35]), np.array([0.45, 0.25, 0.85])
    action = np.zeros(7, np.float32)
    action[:3] = 2 * (target - low) / (high - low) - 1
    action[6] = 1.0
    for _ in range(30):
        _, _, _, _, info = env.step(action)
    np.testing.assert_allclose(info["robot_obs"][:3], target, atol=0.01)
    env.close()


def test_random_initial_state_and_scene_option():
    env = gym.make("VLA/CALVIN-ABCD-v0", assets="builtin", initial_state="random", obs_mode="flat")
    seen = set()
    for seed in range(4):
        _, info = env.reset(seed=seed)
        seen.add(info["scene"])
        np.testing.assert_allclose(info["scene_obs"][:6], 0, atol=1e-3)  # all closed, lights off
        assert len(info["tasks"]) == 5
    assert len(seen) > 1  # scenes are drawn per reset
    _, info = env.reset(seed=0, options={"scene": "B"})
    assert info["scene"] == "B"
    # Same seed, same scene and layout.
    a = env.reset(seed=7)[1]["scene_obs"]
    b = env.reset(seed=7)[1]["scene_obs"]
    np.testing.assert_array_equal(a, b)
    env.close()


def test_links_out_of_view_are_skipped_and_images_stay_the_same():
    """With the official Panda meshes the CPU renderer skips robot links outside a camera's
    view: every image equals a full render of the same state, and the links' colours are back
    afterwards."""
    from vla_gym.envs.calvin.cameras import gripper_view_matrix

    kwargs = official_kwargs()
    env = gym.make("VLA/CALVIN-D-v0", task="open_drawer", render_quality="fast", **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    world = env.unwrapped.world
    cameras, culling = world.cameras, world.cameras.culling
    colours = world.p.getVisualShapeData(world.robot.uid)
    skipped = 0
    for _ in range(25):
        obs, *_ = env.step(env.action_space.sample())
        view = gripper_view_matrix(world.p, *world.robot.camera_pose())
        hidden = culling.hide_outside(view, cameras.gripper_proj)
        culling.restore(hidden)
        skipped += len(hidden)
        cameras.culling = None
        full = world.render()
        cameras.culling = culling
        for name, image in full.items():
            np.testing.assert_array_equal(obs["images"][name], image)
    assert skipped > 0  # the gripper camera does not see the whole arm
    assert world.p.getVisualShapeData(world.robot.uid) == colours
    env.close()
