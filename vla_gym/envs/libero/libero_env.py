"""`LiberoEnv`: one LIBERO suite (robosuite 1.4 on MuJoCo, via ``hf-libero``) as a `VLAEnv`.

Observation (``obs_mode="vla"``):
  * ``images``: ``agentview`` (the scene camera) and ``wrist`` (``robot0_eye_in_hand``), uint8,
    ``image_size`` pixels (default 256). With ``rotate_180=True`` (default) a frame is robosuite's
    camera image turned by 180 degrees, exactly what RLinf and LeRobot feed their policies (and
    what the OpenVLA-style LIBERO training data holds); ``rotate_180=False`` gives robosuite's own
    frame (bottom row first, as in LIBERO's original datasets).
  * ``state`` (8-D): end-effector position (3), axis-angle of the end-effector quaternion (3),
    gripper finger joint positions (2).
  * ``instruction``: the task's language, e.g. "put the black bowl on the plate".
``obs_mode="flat"`` gives the 8-D state alone (LIBERO is a vision benchmark; there is no goal
vector).

Action (7-D in [-1, 1], 20 Hz): LIBERO's OSC_POSE input passed through unchanged: end-effector
position delta (x 0.05 m), rotation delta as axis-angle (x 0.5 rad), gripper (-1 open, +1 close).

Episodes: a reset picks a task and one of its 50 recorded initial states (see
:meth:`LiberoEnv.reset`), then runs ``num_settle_steps`` no-op steps with the gripper open so the
objects (which start a few cm above their support) come to rest. Reward is sparse: 1 on the step
where the task's BDDL goal holds (``success``), which ends the episode. ``info`` also carries
privileged state for scripted experts: the goal predicate, the poses and bounding boxes of its
objects and the end-effector pose (:mod:`vla_gym.envs.libero.privileged`).

Rendering goes through vla_gym's own MuJoCo renderer on robosuite's model, only when an
observation is made (not on settling steps or inside an action chunk), with the render-quality
switch applied (``"fast"``: no shadows, reflections or multisampling, meshes decimated to
``mesh_budget`` triangles).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np

from vla_gym.core import arguments
from vla_gym.core.base import VLAEnv
from vla_gym.core.decimate import DEFAULT_MESH_BUDGET, check_mesh_budget
from vla_gym.envs.libero.offline import import_libero, resolve_assets, use_assets
from vla_gym.envs.libero.privileged import GoalState
from vla_gym.envs.libero.suites import SUITES, get_suite

# Our camera name -> robosuite camera name.
CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
STATE_DIM = 8
ACTION_DIM = 7
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # hold still, gripper open
RESET_OPTIONS = ("task_id", "init_state_id")
MAX_SETTLE_STEPS = 10_000  # no-op steps after a reset; more is a typo


def _index_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name} must be a non-empty list of indices, got {value!r}")
    return list(value)


def select_trial(trial: int, task_pool: list[int], num_init_states: int) -> tuple[int, int]:
    """Task and init state of trial ``trial``: tasks of the pool cycle fastest, then init states.

    With a pool of one task the trials simply cycle through its init states.
    """
    return task_pool[trial % len(task_pool)], (trial // len(task_pool)) % num_init_states


class LiberoEnv(VLAEnv):
    """A LIBERO suite; ``task_id``/``init_state_id`` fix the task / initial state (else cycled).

    Args:
        suite: ``"spatial"``, ``"object"``, ``"goal"``, ``"10"`` or ``"90"`` (set by the ID).
        task_id: fix the task (0-based index in the suite); ``None`` cycles (see ``reset``).
        task_ids: cycle over these tasks only (e.g. a training subset); excludes ``task_id``.
        init_state_id: fix the initial state (0-49); ``None`` cycles.
        init_state_ids: cycle over these initial states only (e.g. training states apart from
            held-out ones); excludes ``init_state_id``.
        libero_assets: the LIBERO asset folder (else ``$VLA_GYM_LIBERO_ASSETS`` or the folders
            hf-libero uses itself); ``gym.make`` fails at once when none is complete.
        image_size: pixels of both cameras, an int or ``(height, width)``.
        cameras: which of ``agentview``/``wrist`` to observe.
        rotate_180: turn frames by 180 degrees like the reference pipelines (see module doc).
        num_settle_steps: no-op steps (gripper open) after setting the initial state.
        max_steps: policy steps per episode (enforced inside chunks); default the suite's
            (RLinf's) limit. (``gym.make``'s own ``max_episode_steps`` would add a TimeLimit
            counting whole chunks instead.)
        mesh_budget: in fast render quality, meshes above this many triangles are drawn
            decimated (:mod:`vla_gym.core.decimate`); ``None`` draws the original meshes.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str = "spatial",
        *,
        task_id: int | None = None,
        task_ids: list[int] | tuple[int, ...] | None = None,
        init_state_id: int | None = None,
        init_state_ids: list[int] | tuple[int, ...] | None = None,
        libero_assets: str | os.PathLike | None = None,
        image_size: int | tuple[int, int] = 256,
        cameras: tuple[str, ...] | list[str] = ("agentview", "wrist"),
        rotate_180: bool = True,
        num_settle_steps: int = 10,
        max_steps: int | None = None,
        obs_mode: str = "vla",
        action_chunk: int = 1,
        terminate_on_success: bool = True,
        render_mode: str | None = None,
        render_quality: str | None = "auto",
        mesh_budget: int | None = DEFAULT_MESH_BUDGET,
    ) -> None:
        self.suite = get_suite(arguments.choice("suite", suite, SUITES))
        height, width = arguments.image_size("image_size", image_size)
        cameras = arguments.names("cameras", cameras, tuple(CAMERAS))
        self.rotate_180 = arguments.flag("rotate_180", rotate_180)
        self.num_settle_steps = arguments.integer(
            "num_settle_steps", num_settle_steps, 0, MAX_SETTLE_STEPS
        )
        max_steps = arguments.optional_integer("max_steps", max_steps, 1)
        self.init_state_id = arguments.optional_integer("init_state_id", init_state_id, 0)
        self.mesh_budget = check_mesh_budget(mesh_budget)
        if task_id is not None and task_ids is not None:
            raise ValueError("give task_id (one task) or task_ids (a subset), not both")
        if init_state_id is not None and init_state_ids is not None:
            raise ValueError(
                "give init_state_id (one state) or init_state_ids (a subset), not both"
            )
        task_id = arguments.optional_integer("task_id", task_id, 0)
        if task_ids is not None:
            task_ids = [
                arguments.integer("task_ids", t, 0) for t in _index_list("task_ids", task_ids)
            ]
        self.init_state_pool: list[int] | None = None  # None: all of a task's states
        if init_state_ids is not None:
            self.init_state_pool = [
                arguments.integer("init_state_ids", i, 0)
                for i in _index_list("init_state_ids", init_state_ids)
            ]
        super().__init__(
            action_dim=ACTION_DIM,
            state_dim=STATE_DIM,
            cameras={name: (height, width) for name in cameras},
            obs_mode=obs_mode,
            action_chunk=action_chunk,
            max_episode_steps=self.suite.max_episode_steps if max_steps is None else max_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_quality=render_quality,
        )
        # Checked before LIBERO is imported: a missing asset folder fails at once.
        self.assets = resolve_assets(arguments.optional_path("libero_assets", libero_assets))
        self._libero = import_libero(self.assets)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the task order
            self._benchmark = self._libero.benchmark.get_benchmark_dict()[self.suite.libero_name]()
        self.num_tasks = self._benchmark.get_num_tasks()
        self.task_id = self._check_task_id(task_id)
        if task_ids is not None:
            self.task_pool = [self._check_task_id(t) for t in task_ids]
        elif self.task_id is not None:
            self.task_pool = [self.task_id]
        else:
            self.task_pool = list(range(self.num_tasks))
        self._init_states: dict[int, np.ndarray] = {}
        for task in self.task_pool:  # every task of the pool must have the chosen states
            for init in [self.init_state_id] if self.init_state_id is not None else []:
                self._check_init_state_id(task, init)
            for init in self.init_state_pool or []:
                self._check_init_state_id(task, init)
        self._sim = None  # libero ControlEnv of the current task, built at the first reset
        self._renderer = None
        self._current_task: int | None = None
        self._current_init: int | None = None
        self._next_seed: int | None = None

    # ----------------------------------------------------------------- tasks
    @property
    def task_names(self) -> list[str]:
        return self._benchmark.get_task_names()

    @property
    def task_languages(self) -> list[str]:
        return [self._benchmark.get_task(i).language for i in range(self.num_tasks)]

    @property
    def current_task_id(self) -> int | None:
        return self._current_task

    @property
    def current_init_state_id(self) -> int | None:
        return self._current_init

    def _check_task_id(self, task_id: Any) -> int | None:
        if task_id is None:
            return None
        if not isinstance(task_id, (int, np.integer)) or not 0 <= task_id < self.num_tasks:
            raise ValueError(
                f"LIBERO-{self.suite.libero_name}: task_id must be an int in "
                f"[0, {self.num_tasks - 1}], got {task_id!r}"
            )
        return int(task_id)

    def init_states(self, task_id: int) -> np.ndarray:
        """The recorded initial MuJoCo states of a task, ``(num_states, state_size)``."""
        if task_id not in self._init_states:
            self._init_states[task_id] = np.asarray(self._benchmark.get_task_init_states(task_id))
        return self._init_states[task_id]

    def _check_init_state_id(self, task_id: int, init_state_id: Any) -> int:
        count = len(self.init_states(task_id))
        if not isinstance(init_state_id, (int, np.integer)) or not 0 <= init_state_id < count:
            raise ValueError(
                f"LIBERO-{self.suite.libero_name}: init_state_id must be an int in "
                f"[0, {count - 1}] for task {task_id}, got {init_state_id!r}"
            )
        return int(init_state_id)

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode.

        The task and initial state come from, in order: ``options`` (``task_id``,
        ``init_state_id``), the constructor's ``task_id``/``task_ids``/``init_state_id``, then
        the seed: ``reset(seed=k)`` runs trial ``k`` of the task pool (all tasks, ``task_ids``
        or the one ``task_id``): task ``pool[k % len(pool)]``, init state ``k // len(pool)``
        (mod 50). With ``init_state_ids`` the init state is
        ``init_state_ids[(k // len(pool)) % len(init_state_ids)]``. A vector env seeded ``s``
        thus puts trial ``s + i`` in env ``i``. A reset without a seed draws both from the env's
        RNG (the init state from ``init_state_ids`` when given).
        """
        unknown = sorted(set(options or {}) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(
                f"{self.env_name}: unknown reset option(s) {unknown}; known: {list(RESET_OPTIONS)}"
            )
        self._next_seed = seed
        return super().reset(seed=seed, options=options)

    def _choose(self, options: dict[str, Any]) -> tuple[int, int]:
        seed = self._next_seed
        task = self._check_task_id(options.get("task_id"))
        init = options.get("init_state_id", self.init_state_id)
        # An explicit task option: the seed (if any) picks its init state.
        pool = [task] if task is not None else self.task_pool
        if seed is not None:
            task = pool[seed % len(pool)]
            count = len(self.init_state_pool or self.init_states(task))
            task, trial_init = select_trial(seed, pool, count)
        else:
            task = pool[int(self.np_random.integers(len(pool)))]
            count = len(self.init_state_pool or self.init_states(task))
            trial_init = int(self.np_random.integers(count))
        if self.init_state_pool is not None:  # a position in the subset -> the state's index
            trial_init = self.init_state_pool[trial_init]
        init = trial_init if init is None else init
        return task, self._check_init_state_id(task, init)

    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        task, init = self._choose(options or {})
        if task != self._current_task or self._sim is None:
            self._build(task)
        # LIBERO places fixtures (cabinets, stoves, ...) with the global NumPy RNG on every reset
        # and the recorded init states do not cover them: draw that jitter from our seeded RNG
        # (same distribution) and leave the caller's global RNG as it was.
        global_rng_state = np.random.get_state()
        np.random.seed(int(self.np_random.integers(2**32)))
        try:
            self._sim.reset()
        finally:
            np.random.set_state(global_rng_state)
        for robot in self._sim.robots:  # a hard reset rebuilds the gripper; a soft one must zero
            robot.gripper.current_action = np.zeros_like(robot.gripper.current_action)
        self._sim.set_init_state(self.init_states(task)[init])
        # The recorded state holds qpos/qvel only; the solver's warm start would carry over from
        # the previous episode and make a seeded reset depend on history.
        self._sim.sim.data._data.qacc_warmstart[:] = 0
        for _ in range(self.num_settle_steps):
            self._sim.step(SETTLE_ACTION)
        self._current_init = init

    def _build(self, task_id: int) -> None:
        """(Re)build robosuite's env for a task: no robosuite cameras, soft resets."""
        self._close_sim()
        use_assets(self._libero.root, self.assets)  # another env in this process may differ
        with contextlib.redirect_stdout(io.StringIO()):
            self._sim = self._libero.ControlEnv(
                bddl_file_name=self._benchmark.get_task_bddl_file_path(task_id),
                has_renderer=False,
                has_offscreen_renderer=False,  # we render ourselves, only when observed
                use_camera_obs=False,
                hard_reset=False,  # the initial state is set right after: no XML reload
                ignore_done=True,  # the step limit is ours
            )
        self._goal_state = GoalState(self._sim.env)
        self._current_task = task_id
        self.instruction = self._benchmark.get_task(task_id).language
        if self.obs_mode == "vla" or self.render_mode is not None:
            self._renderer = self._make_renderer()

    def _make_renderer(self):
        import mujoco

        from vla_gym.core.mujoco_rendering import MujocoCameras

        scene_option = mujoco.MjvOption()
        scene_option.geomgroup[0] = 0  # collision geoms, hidden as in robosuite's renderer
        model = self._sim.sim.model._model
        cameras = {name: (CAMERAS[name], h, w) for name, (h, w) in self.cameras.items()}
        return MujocoCameras(
            model,
            cameras,
            self.render_quality,
            scene_option=scene_option,
            mesh_budget=self.mesh_budget,
        )

    # ------------------------------------------------------------------- step
    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        _, _, done, _ = self._sim.step(action.astype(np.float64))
        success = bool(done)  # LIBERO's done is its BDDL goal check
        return float(success), success, False

    # ------------------------------------------------------------ observation
    def _get_state(self) -> np.ndarray:
        from robosuite.utils.transform_utils import convert_quat, quat2axisangle

        robot = self._sim.robots[0]
        data = self._sim.sim.data
        position = data.site_xpos[robot.eef_site_id]
        quaternion = convert_quat(data.get_body_xquat(robot.robot_model.eef_name), to="xyzw")
        gripper = data.qpos[robot._ref_gripper_joint_pos_indexes]
        return np.concatenate([position, quat2axisangle(quaternion), gripper]).astype(np.float32)

    def _get_images(self) -> dict[str, np.ndarray]:
        data = self._sim.sim.data._data
        images = {}
        for name in self.cameras:
            upright = self._renderer.render(data, name)  # top row first
            # robosuite's frame is upright[::-1]; turned by 180 degrees it is upright[:, ::-1].
            frame = upright[:, ::-1] if self.rotate_180 else upright[::-1]
            images[name] = np.ascontiguousarray(frame)
        return images

    def _extra_info(self) -> dict[str, Any]:
        # the goal's poses are for scripted experts (see vla_gym.envs.libero.privileged)
        return {
            "task_id": self._current_task,
            "init_state_id": self._current_init,
            **self._goal_state.info(),
        }

    # ------------------------------------------------------------------ close
    def _close_sim(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        self._current_task = None

    def close(self) -> None:
        self._close_sim()
        super().close()
