"""LIBERO adapter on the offline asset pack in ../shared/assets/libero.

The pack's largest meshes/textures are stand-ins (see its README): fine for keys, shapes,
rotation, success predicates and vectorisation; not for success rates.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import SHARED_DIR
from gymnasium.utils.env_checker import check_env

import vla_gym
from vla_gym.envs.libero.libero_env import select_trial
from vla_gym.envs.libero.offline import ASSETS_ENV_VAR, LiberoAssetsError, resolve_assets
from vla_gym.envs.libero.suites import SUITES

ROOT = Path(__file__).resolve().parents[1]
ASSETS = SHARED_DIR / "assets" / "libero"
IDS = {name: suite.env_id for name, suite in SUITES.items()}

needs_libero = pytest.mark.skipif(
    importlib.util.find_spec("libero") is None, reason="hf-libero not installed (extra 'libero')"
)
needs_assets = pytest.mark.skipif(
    not ASSETS.is_dir(), reason=f"offline LIBERO asset pack not found at {ASSETS}"
)
SMALL = 32  # pixels: the sweep tests exercise the adapter, not the pictures


def make(suite="spatial", **kwargs):
    kwargs.setdefault("image_size", SMALL)
    return gym.make(IDS[suite], libero_assets=str(ASSETS), **kwargs)


# --------------------------------------------------------------- light checks
def test_ids_registered_without_importing_libero():
    code = (
        f"import sys, vla_gym; ids = vla_gym.registered_ids(); ours = {list(IDS.values())!r}; "
        "print(all(i in ids for i in ours), 'libero.libero' in sys.modules, "
        "'robosuite' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["True", "False", "False"]


def test_select_trial_cycles_tasks_then_init_states():
    tasks = list(range(10))
    assert [select_trial(k, tasks, 50) for k in (0, 9, 10, 23)] == [(0, 0), (9, 0), (0, 1), (3, 2)]
    assert [select_trial(k, [4], 50) for k in (0, 7, 57)] == [(4, 0), (4, 7), (4, 7)]
    assert [select_trial(k, [2, 5], 50) for k in (0, 1, 2, 5)] == [(2, 0), (5, 0), (2, 1), (5, 2)]


def test_missing_assets_fail_at_make_within_seconds(tmp_path, monkeypatch):
    monkeypatch.delenv(ASSETS_ENV_VAR, raising=False)
    start = time.perf_counter()
    with pytest.raises(LiberoAssetsError) as error:
        gym.make(IDS["goal"], libero_assets=str(tmp_path / "nowhere"))
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert "libero_assets=" in message and ASSETS_ENV_VAR in message and "nowhere" in message

    (tmp_path / "scenes").mkdir()  # an incomplete folder names what it lacks
    monkeypatch.setenv(ASSETS_ENV_VAR, str(tmp_path))
    with pytest.raises(LiberoAssetsError, match="turbosquid_objects"):
        resolve_assets()


@needs_assets
def test_assets_from_environment_variable(monkeypatch):
    monkeypatch.setenv(ASSETS_ENV_VAR, str(ASSETS))
    assert resolve_assets() == ASSETS.resolve()


@needs_libero
@needs_assets
def test_import_never_prompts_with_a_fresh_home(tmp_path):
    """No ~/.libero and no LIBERO_CONFIG_PATH: LIBERO would call input(); stdin is closed here."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIBERO_CONFIG_PATH", "VLA_GYM_CACHE")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env[ASSETS_ENV_VAR] = str(ASSETS)
    code = (
        "import gymnasium as gym, vla_gym; "
        "e = gym.make('VLA/LIBERO-Object-v0', image_size=16); "
        "print('TASKS', e.unwrapped.num_tasks)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TASKS 10" in out.stdout
    assert (tmp_path / "cache" / "vla_gym" / "libero" / "config.yaml").exists()
    assert not (tmp_path / ".libero" / "config.yaml").exists()


@needs_libero
@needs_assets
def test_egl_device_numbering_unlike_cuda_does_not_break_import(tmp_path):
    """robosuite asserts MUJOCO_EGL_DEVICE_ID in CUDA_VISIBLE_DEVICES at import; EGL id 1 of
    CUDA device 0 is legitimate (the vector layer translates ids), so it must not fail."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0", MUJOCO_EGL_DEVICE_ID="1")
    env[ASSETS_ENV_VAR] = str(ASSETS)
    code = (
        "import os, gymnasium as gym, vla_gym; "
        "e = gym.make('VLA/LIBERO-Goal-v0', obs_mode='flat', task_id=0); e.reset(seed=0); "
        "print('EGL', os.environ['MUJOCO_EGL_DEVICE_ID'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EGL 1" in out.stdout


@needs_libero
@needs_assets
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="task_id"):
        make(task_id=10)
    with pytest.raises(ValueError, match="cameras"):
        make(cameras=("front",))
    with pytest.raises(ValueError, match="image_size"):
        make(image_size=0)
    with pytest.raises(ValueError, match="suite"):
        gym.make(IDS["spatial"], suite="nope", libero_assets=str(ASSETS))
    env = make(task_id=0)
    with pytest.raises(ValueError, match="init_state_id"):
        env.reset(options={"init_state_id": 50})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"task": 1})
    env.close()


@needs_libero
@needs_assets
def test_init_state_subset_cycles_with_the_task_subset():
    with pytest.raises(ValueError, match="init_state_ids"):
        make(init_state_id=1, init_state_ids=[2])
    with pytest.raises(ValueError, match="init_state_ids"):
        make(init_state_ids=[])
    with pytest.raises(ValueError, match="init_state_id"):
        make(init_state_ids=[3, 50])
    env = make("object", task_ids=[4, 6], init_state_ids=[30, 31, 32], obs_mode="flat")
    try:
        trials = []
        for seed in (0, 1, 2, 5, 6):
            _, info = env.reset(seed=seed)
            trials.append((info["task_id"], info["init_state_id"]))
        # tasks cycle fastest, then the subset's states (wrapping after the last)
        assert trials == [(4, 30), (6, 30), (4, 31), (6, 32), (4, 30)]
        env.reset(seed=None)
        for _ in range(4):  # unseeded resets draw from the subsets too
            _, info = env.reset()
            assert info["task_id"] in (4, 6) and info["init_state_id"] in (30, 31, 32)
    finally:
        env.close()


# ------------------------------------------------------------ one env in depth
@pytest.fixture(scope="module")
def spatial_env():
    if importlib.util.find_spec("libero") is None or not ASSETS.is_dir():
        pytest.skip("hf-libero or the offline LIBERO asset pack is missing")
    env = make("spatial", image_size=(48, 64), render_quality="full")
    yield env
    env.close()


def test_observation_schema(spatial_env):
    obs, info = spatial_env.reset(seed=12)
    assert set(obs) == {"images", "state", "instruction"}
    assert {k: v.shape for k, v in obs["images"].items()} == {
        "agentview": (48, 64, 3),
        "wrist": (48, 64, 3),
    }
    assert all(v.dtype == np.uint8 for v in obs["images"].values())
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert spatial_env.observation_space.contains(obs)
    assert spatial_env.action_space.shape == (7,)
    # seed 12 = trial 12: task 2, init state 1
    assert (info["task_id"], info["init_state_id"]) == (2, 1)
    assert obs["instruction"] == spatial_env.unwrapped.task_languages[2]
    assert obs["instruction"].startswith("pick up the black bowl")
    assert spatial_env.unwrapped.max_episode_steps == 240


def test_state_matches_robosuite_observables(spatial_env):
    obs, _ = spatial_env.reset(seed=0)
    obs, *_ = spatial_env.step(np.array([0.3, -0.2, 0.1, 0, 0, 0.2, 1], np.float32))
    from robosuite.utils.transform_utils import quat2axisangle

    native = spatial_env.unwrapped._sim.env._get_observations(force_update=True)
    expected = np.concatenate(
        [
            native["robot0_eef_pos"],
            quat2axisangle(native["robot0_eef_quat"].copy()),
            native["robot0_gripper_qpos"],
        ]
    )
    np.testing.assert_allclose(obs["state"], expected, atol=1e-5)


def test_images_are_robosuite_frames_rotated_180(spatial_env):
    """Compare with robosuite's own offscreen renderer (same full quality)."""
    from robosuite.utils.binding_utils import MjRenderContextOffscreen

    obs, _ = spatial_env.reset(seed=5)
    sim = spatial_env.unwrapped._sim.sim
    context = MjRenderContextOffscreen(sim, device_id=-1)
    context.vopt.geomgroup[0] = 0  # as robosuite sets it (collision meshes hidden)
    try:
        for ours, theirs in (("agentview", "agentview"), ("wrist", "robot0_eye_in_hand")):
            native = sim.render(width=64, height=48, camera_name=theirs)
            image = obs["images"][ours].astype(int)
            rotated = np.abs(image - native[::-1, ::-1]).mean()
            unrotated = np.abs(image - native).mean()
            assert rotated < 2.0, (ours, rotated)
            assert unrotated > 5 * rotated + 5, (ours, rotated, unrotated)
    finally:
        # robosuite's EGL context registers eglTerminate at exit, which would run before our
        # renderers are closed; free it now and drop that hook (test-only reference renderer).
        import atexit

        from OpenGL import EGL

        sim._render_context_offscreen = None
        context.con.free()
        context.gl_ctx.free()
        atexit.unregister(EGL.eglTerminate)
    unrotated_env = make("spatial", image_size=(48, 64), rotate_180=False, render_quality="full")
    obs_plain, _ = unrotated_env.reset(seed=5)
    for name in obs["images"]:
        np.testing.assert_array_equal(obs_plain["images"][name], obs["images"][name][::-1, ::-1])
    unrotated_env.close()


def test_seeded_resets_are_deterministic_and_options_override(spatial_env):
    first, info = spatial_env.reset(seed=21)
    again, info_again = spatial_env.reset(seed=21)
    np.testing.assert_array_equal(first["state"], again["state"])
    for name in first["images"]:
        np.testing.assert_array_equal(first["images"][name], again["images"][name])
    assert (info["task_id"], info["init_state_id"]) == (1, 2)
    _, info = spatial_env.reset(seed=21, options={"task_id": 7, "init_state_id": 33})
    assert (info["task_id"], info["init_state_id"]) == (7, 33)
    # the gripper is open after the settling steps
    assert first["state"][6] > 0.03 and first["state"][7] < -0.03


def test_success_is_the_bddl_goal_and_terminates(spatial_env):
    """Put the bowl on the plate by hand: the step reports success, reward 1, termination."""
    env = spatial_env.unwrapped
    _, info = spatial_env.reset(seed=0)  # task 0: the bowl between plate and ramekin -> plate
    _, reward, terminated, _, info = spatial_env.step(np.zeros(7, np.float32))
    assert (reward, terminated, info["success"]) == (0.0, False, False)
    robosuite_env = env._sim.env
    sim = robosuite_env.sim
    bowl = robosuite_env.objects_dict["akita_black_bowl_1"]
    plate = sim.data.body_xpos[
        sim.model.body_name2id(robosuite_env.objects_dict["plate_1"].root_body)
    ]
    joint = sim.model.get_joint_qpos_addr(bowl.joints[-1])
    sim.data.qpos[joint[0] : joint[0] + 3] = plate + np.array([0, 0, 0.03])
    sim.data.qvel[:] = 0
    sim.forward()
    success_seen = False
    for _ in range(15):
        _, reward, terminated, truncated, info = spatial_env.step(np.zeros(7, np.float32))
        if terminated:
            success_seen = True
            break
    assert success_seen and info["success"] and info["success_once"] and reward == 1.0


@needs_libero
@needs_assets
def test_chunked_actions_and_step_limit(request):
    env = make("goal", task_id=3, action_chunk=4, max_steps=6, cameras=("wrist",))
    request.addfinalizer(env.close)
    obs, _ = env.reset(seed=1)
    assert list(obs["images"]) == ["wrist"]
    assert env.action_space.shape == (4, 7)
    _, _, _, truncated, info = env.step(np.zeros((4, 7), np.float32))
    assert (truncated, info["executed_steps"], info["elapsed_steps"]) == (False, 4, 4)
    _, _, _, truncated, info = env.step(np.zeros((4, 7), np.float32))
    assert (truncated, info["executed_steps"], info["elapsed_steps"]) == (True, 2, 6)
    with pytest.raises(ValueError, match="NaN"):
        env.reset()
        env.step(np.full((4, 7), np.nan, np.float32))


@needs_libero
@needs_assets
@pytest.mark.parametrize("suite", ["spatial", "object", "goal", "10", "90"])
def test_check_env(suite):
    env = make(suite, image_size=16, render_mode="rgb_array", task_id=0)
    try:
        check_env(env.unwrapped, skip_render_check=False)
    finally:
        env.close()
    if suite == "spatial":  # the flat mode is suite-independent: checked once
        flat = make(suite, obs_mode="flat", task_id=0)
        try:
            check_env(flat.unwrapped)
        finally:
            flat.close()


# ----------------------------------------- every task: gym.make and vector layer
SWEEP_SUITES = ["spatial", "object", "goal", "10"]
STEPS = 20
_reference_states: dict[tuple[str, int, int], np.ndarray] = {}


def _check_obs(obs, where):
    assert obs["state"].shape == (8,) and np.isfinite(obs["state"]).all(), where
    assert abs(obs["state"][2]) < 2.0, f"{where}: end effector flew off"
    for image in obs["images"].values():
        assert image.shape == (SMALL, SMALL, 3) and image.dtype == np.uint8, where


@needs_libero
@needs_assets
@pytest.mark.slow
@pytest.mark.parametrize("suite", SWEEP_SUITES)
def test_every_task_builds_resets_and_steps(suite):
    """gym.make; each task's first 3 init states (trial seeds, as the vector env below uses);
    20 random steps each. The env rebuilds its scene when the task changes."""
    rng = np.random.default_rng(0)
    env = make(suite)
    try:
        for task in range(10):
            for init in range(3):
                obs, info = env.reset(seed=10 * init + task)  # trial 10 * init + task
                where = f"{suite} task {task} init {init}"
                assert (info["task_id"], info["init_state_id"]) == (task, init), where
                assert obs["instruction"] == env.unwrapped.task_languages[task]
                _check_obs(obs, where)
                _reference_states[(suite, task, init)] = obs["state"]
                for _ in range(STEPS):
                    action = rng.uniform(-1, 1, 7).astype(np.float32)
                    obs, reward, terminated, truncated, info = env.step(action)
                    assert reward in (0.0, 1.0) and not truncated, where
                    if terminated:
                        break
                _check_obs(obs, where)
    finally:
        env.close()


@needs_libero
@needs_assets
@pytest.mark.slow
@pytest.mark.parametrize("suite", SWEEP_SUITES)
def test_every_task_through_the_vector_layer(suite):
    """10 envs (2 worker processes); seeding s puts trial s + i (task i, init s // 10) in env i.

    Each worker builds its 5 scenes at the first reset: on a loaded 2-core machine that can take
    minutes, hence the long step_timeout."""
    envs = vla_gym.make_vec(
        IDS[suite],
        10,
        backend="subproc",
        envs_per_worker=5,
        step_timeout=1800,
        image_size=SMALL,
        libero_assets=str(ASSETS),
    )
    try:
        rng = np.random.default_rng(1)
        for init in range(3):
            obs, infos = envs.reset(seed=10 * init)
            np.testing.assert_array_equal(infos["task_id"], np.arange(10))
            np.testing.assert_array_equal(infos["init_state_id"], np.full(10, init))
            assert obs["images"]["agentview"].shape == (10, SMALL, SMALL, 3)
            for task in range(10):
                reference = _reference_states.get((suite, task, init))
                if reference is not None:  # same trial, same state as through gym.make
                    np.testing.assert_allclose(obs["state"][task], reference, atol=1e-5)
            for _ in range(STEPS):
                actions = rng.uniform(-1, 1, (10, 7)).astype(np.float32)
                obs, rewards, terminated, truncated, infos = envs.step(actions)
                assert np.isfinite(obs["state"]).all() and not truncated.any()
                assert set(np.unique(rewards)) <= {0.0, 1.0}
    finally:
        envs.close()
