"""What a hostile or unlucky user meets: killed workers and trainers, bad actions, bad
constructor arguments, leftovers on disk, and Ray's network listeners."""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import psutil
import pytest
import torch
from conftest import SHARED_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_vector_helpers import FaultyEnv, ImageEnv

import vla_gym
from trainers import checkpoint
from trainers.config import ConfigError, load_config
from trainers.train import Trainer
from vla_gym.vector import WorkerDiedError, make_vec

ROOT = Path(__file__).resolve().parents[1]
LIBERO_ASSETS = SHARED_DIR / "assets" / "libero"
HAS_LIBERO = importlib.util.find_spec("libero") is not None and LIBERO_ASSETS.is_dir()


# ------------------------------------------------------------------ training survives
def small_run(tmp_path: Path, *overrides: str):
    """Two Panda envs in two worker processes, eight steps per rollout, three iterations."""
    return load_config(
        "panda_pick_cube_ppo_mlp_cpu",
        [
            f"runner.log_dir={tmp_path}",
            "env.num_envs=2",
            "env.envs_per_worker=1",
            "env.backend=subproc",
            "algorithm.global_batch_size=16",
            "algorithm.micro_batch_size=16",
            "runner.max_iterations=3",
            "runner.save_interval=100",  # only the final (or an exit) checkpoint
            "runner.progress_bar=off",
            *overrides,
        ],
        smoke=True,
    )


def on_policy_step(trainer: Trainer, step: int, action) -> None:
    """Run ``action(trainer)`` just before the ``step``-th policy step (mid-rollout)."""
    act = trainer.rollout_policy.act
    calls = itertools.count(1)

    def act_then(*args, **kwargs):
        if next(calls) == step:
            action(trainer)
        return act(*args, **kwargs)

    trainer.rollout_policy.act = act_then


def kill_worker(trainer: Trainer) -> None:
    pid = trainer.collector.stages[0].envs.worker_info()[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=10)


def saved_iteration(trainer: Trainer) -> int:
    return torch.load(trainer.latest_path, weights_only=False)["iteration"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_killed_worker_is_replaced_and_training_finishes(tmp_path, one_thread):
    trainer = Trainer(small_run(tmp_path))  # env.restart_on_failure is on by default
    on_policy_step(trainer, 12, kill_worker)  # during the second iteration's rollout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.iteration == 3 and saved_iteration(trainer) == 3
    assert any("restarting worker 0" in str(w.message) for w in caught)


def test_without_restarts_a_crash_leaves_a_checkpoint_to_resume(tmp_path, one_thread):
    config = small_run(tmp_path, "env.restart_on_failure=false")
    trainer = Trainer(config)
    on_policy_step(trainer, 12, kill_worker)
    with pytest.raises(WorkerDiedError, match="SIGKILL"):
        trainer.train()
    assert trainer.iteration == 1 and saved_iteration(trainer) == 1  # the finished iteration
    resumed = Trainer(config, resume=True)
    assert resumed.resumed_from == trainer.latest_path and resumed.iteration == 1
    resumed.train()
    assert saved_iteration(resumed) == 3


@pytest.fixture
def default_sigint():
    """Ctrl-C as in a terminal: a shell that starts the suite in the background ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_save_the_finished_iterations(
    tmp_path, one_thread, default_sigint, signum
):
    trainer = Trainer(small_run(tmp_path, "env.backend=sync"))
    on_policy_step(trainer, 20, lambda _: os.kill(os.getpid(), signum))  # 3rd iteration
    expected = SystemExit if signum == signal.SIGTERM else KeyboardInterrupt
    with pytest.raises(expected):
        trainer.train()
    assert saved_iteration(trainer) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_resume_refuses_to_start_over_and_resume_if_present_says_so(tmp_path):
    config = small_run(tmp_path, "env.backend=sync")
    with pytest.raises(FileNotFoundError, match="no checkpoint .* --resume-if-present"):
        Trainer(config, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(config, resume=str(tmp_path / "missing.pt"))
    # an unfinished save of a killed run is removed at the next start
    folder = tmp_path / config.name / "checkpoints"
    folder.mkdir(parents=True)
    unfinished = folder / f".{checkpoint.LATEST}.abc123.tmp"
    unfinished.write_bytes(b"partial")
    trainer = Trainer(config, resume_if_present=True)
    try:
        assert trainer.resumed_from is None and trainer.iteration == 0
        assert not unfinished.exists()
    finally:
        trainer.collector.close()


def test_vector_settings_are_trainer_settings_not_env_kwargs():
    config = load_config("panda_pick_cube_ppo_mlp_cpu", ["env.step_timeout=30"])
    assert config.env.restart_on_failure is True and config.env.step_timeout == 30.0
    with pytest.raises(ConfigError, match="env.kwargs.restart_on_failure .* env.restart_on"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["env.kwargs.restart_on_failure=true"])
    with pytest.raises(ConfigError, match="env.step_timeout must be > 0"):
        load_config("panda_pick_cube_ppo_mlp_cpu", ["env.step_timeout=0"])


# ------------------------------------------------------------------ lockstep of a batch
FLAT_PANDA = {"obs_mode": "flat", "max_steps": 1000}


@pytest.mark.parametrize("backend", ["sync", "subproc"])
def test_a_bad_action_row_steps_no_env(backend):
    envs = make_vec("VLA/PandaPickCube-v0", 2, backend=backend, **FLAT_PANDA)
    try:
        envs.reset(seed=0)
        envs.step(np.zeros((2, 4), np.float32))
        for bad in (np.nan, np.inf):
            actions = np.zeros((2, 4), np.float32)
            actions[1, 2] = bad
            with pytest.raises(ValueError, match=r"envs \[1\] contain NaN or inf"):
                envs.step(actions)
            assert envs.get_attr("elapsed_steps") == (1, 1)
        with pytest.raises(ValueError, match="must be numeric"):
            envs.step(np.full((2, 4), "a"))
        assert envs.get_attr("elapsed_steps") == (1, 1)
        huge = np.array([[1e39, 0, 0, 0], [0, -1e39, 0, 0]])  # finite, beyond float32
        obs, *_ = envs.step(huge)
        assert envs.get_attr("elapsed_steps") == (2, 2) and np.isfinite(obs).all()
    finally:
        envs.close()


def test_a_finite_action_beyond_float32_is_clipped_not_refused():
    env = gym.make("VLA/PandaPickCube-v0", **FLAT_PANDA)
    env.reset(seed=0)
    clipped = env.unwrapped.validate_action(np.array([1e39, -1e39, 0.5, 2.0]))
    np.testing.assert_array_equal(clipped, [[1, -1, 0.5, 1]])
    env.step(np.array([1e39, 0, 0, 0]))
    env.close()


# ------------------------------------------------------------------ action fuzzing
def fuzz_targets() -> list:
    targets = [
        ("VLA/PandaPickCube-v0", FLAT_PANDA),
        ("VLA/PandaPickCubeVision-v0", {"image_size": 24, "max_steps": 1000}),
        ("VLA/MetaWorld-v0", {"task": "reach", "obs_mode": "flat", "max_steps": 1000}),
        ("VLA/CALVIN-D-v0", {"static_size": 24, "gripper_size": 16, "max_steps": 1000}),
    ]
    libero = {"libero_assets": str(LIBERO_ASSETS), "image_size": 16, "num_settle_steps": 0}
    targets.append(
        pytest.param(
            "VLA/LIBERO-Spatial-v0",
            libero,
            marks=pytest.mark.skipif(not HAS_LIBERO, reason="hf-libero or LIBERO assets absent"),
        )
    )
    return targets


def fuzzed_actions(shape: tuple[int, ...]):
    """Mostly well-shaped arrays of any float (NaN, inf, huge, tiny) or int values, some with a
    wrong shape, some of strings."""
    wrong = st.sampled_from([shape[1:], (*shape, 1), (shape[0] + 1, *shape[1:]), ()])
    shapes = st.one_of(st.just(shape), st.just(shape), st.just(shape), wrong)
    floats = hnp.arrays(
        st.sampled_from([np.float64, np.float32]),
        shapes,
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
    finite = hnp.arrays(np.float64, shapes, elements=st.floats(-1e300, 1e300))
    ints = hnp.arrays(np.int64, shapes, elements=st.integers(-(2**40), 2**40))
    strings = hnp.arrays(np.dtype("U3"), st.just(shape), elements=st.text("ab1.-", max_size=3))
    return st.one_of(finite, finite, floats, ints, strings)


def acceptable(action: np.ndarray, shape: tuple[int, ...]) -> bool:
    return action.shape == shape and action.dtype.kind in "iuf" and bool(np.isfinite(action).all())


FUZZ = settings(  # the same examples on every run, nothing written to disk
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(("env_id", "kwargs"), fuzz_targets())
def test_fuzzed_actions_step_or_are_refused_without_a_trace(env_id, kwargs):
    """Single actions through ``gym.make``: a refused action changes nothing."""
    env = gym.make(env_id, render_quality="fast", **kwargs)
    env.reset(seed=0)
    shape = env.action_space.shape

    @FUZZ
    @given(action=fuzzed_actions(shape))
    def check(action):
        before = env.unwrapped.elapsed_steps
        if not acceptable(action, shape):
            with pytest.raises(ValueError, match=env_id):
                env.step(action)
            assert env.unwrapped.elapsed_steps == before
            return
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert info["elapsed_steps"] == before + info["executed_steps"]
        if terminated or truncated:
            env.reset()

    try:
        check()
    finally:
        env.close()


@pytest.mark.parametrize(("env_id", "kwargs"), fuzz_targets())
def test_fuzzed_chunks_in_a_batch_step_every_env_or_none(env_id, kwargs):
    """Chunks of 3 actions through ``make_vec``: one fuzzed row next to a valid one."""
    envs = make_vec(env_id, 2, backend="sync", action_chunk=3, render_quality="fast", **kwargs)
    envs.reset(seed=0)
    shape = envs.single_action_space.shape
    assert shape[0] == 3

    @FUZZ
    @given(action=fuzzed_actions(shape))
    def check(action):
        before = envs.get_attr("elapsed_steps")
        batch = [action, np.zeros(shape, np.float32)]
        if not acceptable(action, shape):
            with pytest.raises(ValueError):
                envs.step(np.stack(batch) if action.shape == shape else batch)
            assert envs.get_attr("elapsed_steps") == before
            return
        obs, rewards, terminated, truncated, infos = envs.step(np.stack(batch))
        assert envs.observation_space.contains(obs) and np.isfinite(rewards).all()
        after = envs.get_attr("elapsed_steps")
        for env in range(2):  # an env whose episode ended is reset by the next step
            assert after[env] == before[env] + infos["executed_steps"][env] or (
                terminated[env] or truncated[env] or before[env] == 0
            )

    try:
        check()
    finally:
        envs.close()


# ------------------------------------------------------------------ constructor arguments
COMMON_BAD = [
    ({"obs_mode": "pixels"}, "obs_mode"),
    ({"action_chunk": 2.5}, "action_chunk"),
    ({"action_chunk": 0}, "action_chunk"),
    ({"action_chunk": True}, "action_chunk"),
    ({"terminate_on_success": "no"}, "terminate_on_success"),
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 1.5}, "max_steps"),
    ({"render_mode": "human"}, "render_mode"),
    ({"render_mode": "rgb_array_list"}, "render_mode"),
    ({"render_quality": "ultra"}, "render_quality"),
]
IMAGE_BAD = [
    ({"image_size": 0}, "image_size"),
    ({"image_size": -1}, "image_size"),
    ({"image_size": 2.5}, "image_size"),
    ({"image_size": (32, 0)}, "image_size"),
    ({"image_size": (8, 8, 3)}, "image_size"),
    ({"image_size": 10**6}, "image_size"),
]
BAD_ARGUMENTS = {
    "VLA/PandaPickCube-v0": [
        *COMMON_BAD,
        *IMAGE_BAD,
        ({"vision": "yes"}, "vision"),
        ({"control_dt": -1}, "control_dt"),
        ({"control_dt": 0}, "control_dt"),
        ({"control_dt": float("nan")}, "control_dt"),
        ({"physics_dt": 0}, "physics_dt"),
        ({"physics_dt": 0.5}, "physics_dt"),  # longer than a control step
        ({"reward_type": "shaped"}, "reward_type"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
    "VLA/MetaWorld-v0": [
        *[(dict(task="reach", **kwargs), name) for kwargs, name in COMMON_BAD + IMAGE_BAD],
        ({"task": "reach", "trial_seed": -1}, "trial_seed"),
        ({"task": "reach", "task_stride": 0}, "task_stride"),
        ({"task": "reach", "settle_steps": -1}, "settle_steps"),
        ({"task": "reach", "settle_steps": 0.5}, "settle_steps"),
        ({"task": "reach", "num_trials": 0}, "num_trials"),
        ({"task": "reach", "cameras": []}, "cameras"),
        ({"task": "reach", "cameras": ["corner2", "corner2"]}, "cameras"),
        ({"task": "reach", "rotate_images": 1}, "rotate_images"),
        ({"task": "reach", "reward_type": "shaped"}, "reward_type"),
        ({"task": "fly"}, "task"),
        ({"suite": "MT51"}, "suite"),
        ({"suite": ["MT50"]}, "suite"),
    ],
    "VLA/CALVIN-D-v0": [
        *COMMON_BAD,
        ({"scenes": ("E",)}, "scenes"),
        ({"scenes": []}, "scenes"),
        ({"task": "fly_away"}, "task"),
        ({"num_subtasks": 6}, "num_subtasks"),
        ({"steps_per_subtask": 0}, "steps_per_subtask"),
        ({"static_size": 0}, "static_size"),
        ({"gripper_size": -3}, "gripper_size"),
        ({"cameras": ("static", "side")}, "cameras"),
        ({"initial_state": "chaos"}, "initial_state"),
        ({"action_mode": "joint"}, "action_mode"),
        ({"assets": "cloud"}, "assets"),
        ({"instructions": "klingon"}, "instructions"),
        ({"calvin_root": 5}, "calvin_root"),
    ],
    "VLA/LIBERO-Spatial-v0": [
        *COMMON_BAD,
        *IMAGE_BAD,
        ({"suite": "nope"}, "suite"),
        ({"cameras": ("front",)}, "cameras"),
        ({"rotate_180": "yes"}, "rotate_180"),
        ({"num_settle_steps": -1}, "num_settle_steps"),
        ({"task_id": -1}, "task_id"),
        ({"task_id": 1, "task_ids": [2]}, "task_ids"),
        ({"task_ids": []}, "task_ids"),
        ({"init_state_id": -2}, "init_state_id"),
        ({"libero_assets": 3}, "libero_assets"),
    ],
    "VLA/Behavior-v0": [
        *COMMON_BAD,
        *IMAGE_BAD,
        ({"activity": 99}, "activity"),
        ({"cameras": ["top"]}, "cameras"),
        ({"state_keys": ["wings"]}, "state_keys"),
        ({"observe_every_step": "always"}, "observe_every_step"),
        ({"omnigibson_env_factory": "og"}, "omnigibson_env_factory"),
        ({"base_config": ["robots"]}, "base_config"),
    ],
}
# ranges only known once LIBERO's task list is loaded
LIBERO_WITH_ASSETS = [({"task_id": 10}, "task_id"), ({"init_state_id": 50}, "init_state_id")]


def bad_argument_cases() -> list:
    cases = [
        pytest.param(env_id, kwargs, name, id=f"{env_id}-{name}-{kwargs[name]!r}"[:80])
        for env_id, table in BAD_ARGUMENTS.items()
        for kwargs, name in table
    ]
    cases += [
        pytest.param(
            "VLA/LIBERO-Spatial-v0",
            {"libero_assets": str(LIBERO_ASSETS), **kwargs},
            name,
            marks=pytest.mark.skipif(not HAS_LIBERO, reason="hf-libero or LIBERO assets absent"),
            id=f"LIBERO-{name}-range",
        )
        for kwargs, name in LIBERO_WITH_ASSETS
    ]
    return cases


@pytest.mark.parametrize(("env_id", "kwargs", "name"), bad_argument_cases())
def test_bad_constructor_arguments_fail_at_make_naming_the_argument(env_id, kwargs, name):
    with pytest.raises((ValueError, TypeError)) as caught:
        gym.make(env_id, **kwargs)
    assert name in str(caught.value)


REQUIRED = {"VLA/MetaWorld-v0": {"task": "reach"}}  # an ID that needs an argument to build


@pytest.mark.parametrize("env_id", vla_gym.registered_ids())
def test_every_id_refuses_the_shared_bad_arguments(env_id):
    for kwargs, name in COMMON_BAD:
        with pytest.raises((ValueError, TypeError), match=name):
            gym.make(env_id, **REQUIRED.get(env_id, {}), **kwargs)


def test_module_prefixed_ids_work_in_make_vec():
    envs = vla_gym.make_vec("vla_gym:VLA/PandaPickCube-v0", 1, backend="sync", obs_mode="flat")
    try:
        assert envs.spec.id == "VLA/PandaPickCube-v0"
        assert envs.reset(seed=0)[0].shape == (1, 10)
    finally:
        envs.close()
    with pytest.raises(ValueError, match="no_such_module"):
        vla_gym.make_vec("no_such_module:VLA/PandaPickCube-v0", 1, backend="sync")


# ------------------------------------------------------------------ leftovers
def crash_logs(pid: int) -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"vla_gym_{pid}_worker*.log"))


def test_crash_logs_are_named_by_pid_and_kept_only_after_a_crash():
    envs = make_vec(ImageEnv, 2)
    assert [p.name.split("_")[3] for p in crash_logs(os.getpid())] == ["worker0", "worker1"]
    envs.close()
    assert crash_logs(os.getpid()) == []
    envs = make_vec(FaultyEnv, 2, fault="segfault", faulty_seed=1)
    try:
        envs.reset(seed=0)
        envs.step(np.zeros((2, 2), np.float32))
        with pytest.raises(WorkerDiedError, match="SIGSEGV") as caught:
            envs.step(np.zeros((2, 2), np.float32))
    finally:
        envs.close()
    (kept,) = crash_logs(os.getpid())
    assert str(kept) in str(caught.value) and "Segmentation fault" in kept.read_text()
    kept.unlink()


def test_empty_crash_logs_of_killed_parents_are_removed_at_the_next_start():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    empty = Path(tempfile.gettempdir()) / f"vla_gym_{dead.pid}_worker0_x.log"
    crashed = Path(tempfile.gettempdir()) / f"vla_gym_{dead.pid}_worker1_x.log"
    empty.touch()
    crashed.write_text("Fatal Python error: Segmentation fault")
    make_vec(ImageEnv, 1).close()
    assert not empty.exists() and crashed.exists()
    crashed.unlink()


# ------------------------------------------------------------------ Ray
RAY_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import cloudpickle, psutil, test_vector_helpers
    from test_vector_helpers import ImageEnv
    from vla_gym.vector import make_vec

    cloudpickle.register_pickle_by_value(test_vector_helpers)
    envs = make_vec(ImageEnv, 1, backend="ray")
    envs.reset(seed=0)
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                print("LISTEN", process.name(), connection.laddr.ip, flush=True)
    envs.close()
    """
)
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_a_local_ray_instance_listens_on_loopback_only(tmp_path):
    script = tmp_path / "ray_listeners.py"
    script.write_text(RAY_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_memory_monitor_refresh_ms="0")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listeners = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("LISTEN")]
    assert any(name == "gcs_server" for name, _ in listeners), done.stdout
    assert all(ip in LOOPBACK for _, ip in listeners), listeners


def test_ray_address_belongs_to_the_ray_backend():
    with pytest.raises(ValueError, match="ray_address= is for backend='ray'"):
        make_vec(ImageEnv, 1, backend="subproc", ray_address="auto")
