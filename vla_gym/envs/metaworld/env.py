"""`VLA/MetaWorld-*`: Meta-World v3 (Sawyer arm on MuJoCo) behind the vla_gym schema.

* action (4-D, in [-1, 1]), passed to Meta-World's own command unchanged: ``(dx, dy, dz)`` moves
  the hand's mocap target by ``action * 0.01`` m per step (Meta-World's ``action_scale``; the
  target is clipped to the mocap box), ``grip`` is the finger effort (+1 closes, -1 opens).
  One step is 5 physics steps of 2.5 ms (80 Hz).
* state (4-D): hand xyz (m) and the normalised finger opening (0 closed .. 1 open), the first
  four entries of Meta-World's 39-D observation.
* images: ``corner2`` by default (``cameras=`` takes one name or a list: ``corner``,
  ``corner2``, ``corner3``, ``corner4``, ``topview``, ``behindGripper``, ``gripperPOV``),
  ``image_size`` px square (default 128, a CPU-friendly size; the reference recipes train at
  224-480). ``rotate_images=True`` (default) turns every image 180 degrees, as LeRobot's and
  RLinf's Meta-World wrappers do so that frames match their training data. In fast render
  quality meshes above ``mesh_budget`` triangles (default 500) are drawn decimated
  (:mod:`vla_gym.core.decimate`); ``mesh_budget=None`` draws the original meshes.
* ``obs_mode="flat"``: the 39-D Meta-World observation (hand, gripper, objects, previous frame,
  goal). Multi-task suites (MT50) show the goal and append a one-hot task id; meta-learning
  suites (ML45) hide the goal (zeros), as Meta-World does.
* reset: the task/trial cycle of :mod:`vla_gym.envs.metaworld.tasks` (``task_stride=`` sets the
  step between tasks), or ``reset(options={"task": name, "trial": i})`` for one episode (missing
  keys come from the cycle; the cycle is not advanced). Then ``settle_steps`` zero actions
  (default 15, as RLinf) let the scene come to rest; they do not count towards the limit.
* reward: ``reward_type="sparse"`` (default) 1.0 on the step Meta-World reports success;
  ``"dense"`` Meta-World's own shaped reward divided by 10 (so each step is in [0, 1]), a signal
  for RL on tasks the policy rarely solves. Success terminates by default; ``max_steps``
  (default 100) truncates.

``info`` carries ``task``, ``trial`` and ``native_obs``: the full 39-D observation with the goal
always visible (privileged; the scripted experts of ``metaworld.policies`` act on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_gym.core import arguments
from vla_gym.core.base import VLAEnv
from vla_gym.core.decimate import DEFAULT_MESH_BUDGET, check_mesh_budget
from vla_gym.core.deps import require
from vla_gym.envs.metaworld.instructions import INSTRUCTIONS
from vla_gym.envs.metaworld.tasks import (
    VERSION_SUFFIX,
    Suite,
    canonical_task,
    cycle_position,
    make_suite,
    trial_seed_sequence,
)

CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
NATIVE_OBS_DIM = 39
_GOAL = slice(36, 39)
# Meta-World raises once its own horizon (500) is reached; our env enforces its own limit.
_NO_NATIVE_LIMIT = 2**62


REWARD_TYPES = ("sparse", "dense")
MAX_SETTLE_STEPS = 10_000  # zero-action steps after a reset; more is a typo


class MetaWorldEnv(VLAEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        suite: str | None = None,
        task: str | Sequence[str] | None = None,
        *,
        num_trials: int | None = None,
        task_stride: int = 1,
        trial_seed: int = 0,
        cameras: str | Sequence[str] = "corner2",
        image_size: int | tuple[int, int] = 128,
        rotate_images: bool = True,
        settle_steps: int = 15,
        obs_mode: str = "vla",
        action_chunk: int = 1,
        max_steps: int = 100,
        terminate_on_success: bool = True,
        reward_type: str = "sparse",
        render_mode: str | None = None,
        render_quality: str | None = "auto",
        mesh_budget: int | None = DEFAULT_MESH_BUDGET,
    ) -> None:
        self.reward_type = arguments.choice("reward_type", reward_type, REWARD_TYPES)
        camera_names = arguments.names("cameras", cameras, CAMERAS)
        height, width = arguments.image_size("image_size", image_size)
        num_trials = arguments.optional_integer("num_trials", num_trials, 1)
        self.task_stride = arguments.integer("task_stride", task_stride, 1)
        self.trial_seed = arguments.integer("trial_seed", trial_seed, 0)
        self.rotate_images = arguments.flag("rotate_images", rotate_images)
        self.settle_steps = arguments.integer("settle_steps", settle_steps, 0, MAX_SETTLE_STEPS)
        require("metaworld", extra="metaworld", what="VLA/MetaWorld")
        self.mesh_budget = check_mesh_budget(mesh_budget)
        self.suite: Suite = make_suite(suite, task, num_trials)
        flat_dim = NATIVE_OBS_DIM + (len(self.suite.tasks) if self.suite.one_hot else 0)
        super().__init__(
            action_dim=4,
            state_dim=4,
            flat_dim=flat_dim,
            cameras={name: (height, width) for name in camera_names},
            obs_mode=obs_mode,
            action_chunk=action_chunk,
            max_episode_steps=max_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_quality=render_quality,
        )
        self.task: str = self.suite.tasks[0]
        self.trial: int = 0
        self.instruction = INSTRUCTIONS[self.task]
        self._cycle_seed: int | None = None  # the seed of the last seeded reset
        self._episode = 0  # cycle-driven episodes since then
        self._reset_seed: int | None = None
        self._native: Any = None  # the Meta-World env of the current task (rebuilt on a switch)
        self._native_task: str | None = None
        self._mujoco_cameras: Any = None
        self._native_obs = np.zeros(NATIVE_OBS_DIM)

    # ------------------------------------------------------------ public API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_seed = seed
        return super().reset(seed=seed, options=options)

    def close(self) -> None:
        self._release_native()
        super().close()

    # ------------------------------------------------------------------ hooks
    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        self.task, self.trial = self._next_task_and_trial(options or {})
        self.instruction = INSTRUCTIONS[self.task]
        native = self._load_native(self.task)
        # Meta-World's own sampler (with its rejection loops) draws the trial's layout.
        native.np_random = np.random.default_rng(
            trial_seed_sequence(self.task, self.trial, self.trial_seed)
        )
        obs, _ = native.reset()
        no_op = np.zeros(4)
        for _ in range(self.settle_steps):
            obs, *_ = native.step(no_op)
        self._native_obs = np.asarray(obs, dtype=np.float64)

    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        obs, native_reward, _, _, native_info = self._native.step(action.astype(np.float64))
        self._native_obs = np.asarray(obs, dtype=np.float64)
        success = bool(native_info["success"])
        reward = float(native_reward) / 10.0 if self.reward_type == "dense" else float(success)
        return reward, success, False

    def _get_state(self) -> np.ndarray:
        return self._native_obs[:4].astype(np.float32)

    def _get_flat(self) -> np.ndarray:
        flat = self._native_obs.astype(np.float32)
        if not self.suite.goal_observable:
            flat[_GOAL] = 0.0
        if self.suite.one_hot:
            one_hot = np.zeros(len(self.suite.tasks), np.float32)
            one_hot[self.suite.tasks.index(self.task)] = 1.0
            flat = np.concatenate([flat, one_hot])
        return flat

    def _get_images(self) -> dict[str, np.ndarray]:
        images = {}
        for name in self.cameras:
            image = self._mujoco_cameras.render(self._native.data, name)
            images[name] = np.ascontiguousarray(image[::-1, ::-1]) if self.rotate_images else image
        return images

    def _extra_info(self) -> dict[str, Any]:
        return {"task": self.task, "trial": self.trial, "native_obs": self._native_obs.copy()}

    # -------------------------------------------------------------- internals
    def _next_task_and_trial(self, options: dict[str, Any]) -> tuple[str, int]:
        if self._reset_seed is not None:
            self._cycle_seed, self._episode = int(self._reset_seed), 0
        elif self._cycle_seed is None:  # unseeded first reset: a random start, then the cycle
            self._cycle_seed, self._episode = int(self.np_random.integers(2**31)), 0
        task, trial = cycle_position(self.suite, self._cycle_seed, self._episode, self.task_stride)
        if "task" not in options and "trial" not in options:
            self._episode += 1
            return task, trial
        if "task" in options:
            task = canonical_task(options["task"])
            if task not in self.suite.tasks:
                raise ValueError(
                    f"{self.env_name}: task {task!r} is not in suite {self.suite.name} "
                    f"({', '.join(self.suite.tasks)})"
                )
        if "trial" in options:
            trial = options["trial"]
            if not isinstance(trial, int | np.integer) or not 0 <= trial < self.suite.num_trials:
                raise ValueError(
                    f"{self.env_name}: trial must be an integer in [0, {self.suite.num_trials}), "
                    f"got {trial!r}"
                )
        return task, int(trial)

    def _load_native(self, task: str) -> Any:
        if self._native_task == task:
            return self._native
        self._release_native()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        from vla_gym.core.mujoco_rendering import MujocoCameras

        native = ALL_V3_ENVIRONMENTS[task + VERSION_SUFFIX]()
        # What Meta-World's benchmark classes do through set_task, minus the frozen layout: the
        # layout comes from the env's seeded sampler, the goal is always in the observation.
        native._set_task_called = True
        native._freeze_rand_vec = False
        native.seeded_rand_vec = True
        native.max_path_length = _NO_NATIVE_LIMIT
        native._partially_observable = False
        native.__dict__.pop("sawyer_observation_space", None)  # cached for the old setting
        self._native, self._native_task = native, task
        if self.obs_mode == "vla" or self.render_mode == "rgb_array":
            self._mujoco_cameras = MujocoCameras(
                native.model,
                {name: (name, h, w) for name, (h, w) in self.cameras.items()},
                self.render_quality,
                mesh_budget=self.mesh_budget,
            )
        return native

    def _release_native(self) -> None:
        if self._mujoco_cameras is not None:
            self._mujoco_cameras.close()
            self._mujoco_cameras = None
        if self._native is not None:
            self._native.close()
            self._native, self._native_task = None, None
