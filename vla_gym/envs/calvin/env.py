"""``CalvinEnv``: CALVIN's play table (scenes A-D) behind vla_gym's observation/action schema.

Action (``action_mode="relative"``, CALVIN's benchmark format), 7-D in [-1, 1]:
``(dx, dy, dz, droll, dpitch, dyaw, gripper)``; each unit moves the internal target pose by
0.02 m / 0.05 rad per step; gripper > 0 opens, otherwise closes. ``action_mode="absolute"``:
the TCP target position in the workspace box ``ABS_POS_LOW..ABS_POS_HIGH`` and euler angles
``NEUTRAL_TCP_EULER + pi * a[3:6]``.

Observation: ``images`` ``static`` (200x200) and ``gripper`` (84x84); ``state`` = the 15-D
``robot_obs`` (TCP xyz, TCP euler xyz, gripper width, 7 arm joints, last gripper action);
``instruction`` = the current subtask's sentence. ``obs_mode="flat"``: robot_obs (15) +
scene_obs (24) + one-hot of the current task (34).

Episodes: a chain of ``num_subtasks`` (5) tasks, +1 reward per solved subtask, the instruction
switches on success, at most ``steps_per_subtask`` (360) steps per subtask; a subtask running
out of steps terminates the chain (the evaluation protocol's "first failure ends the chain"),
solving all of them terminates with ``success``. With ``task="open_drawer"`` the episode is
that one task: +1 and termination on success, truncation after ``max_steps`` (360).

``reward_type="progress"`` adds potential-based shaping for RL from policies that rarely solve
a subtask: the potential is ``PROGRESS_WEIGHT`` (0.5) times the current subtask's graded
progress (``tasks.task_progress``: a block's turn, shift or rise, the slider's or drawer's
travel towards the oracle's threshold), for rotate/push/lift tasks ``0.75 * progress + 0.25 *
exp(-10 * |TCP - block|)``. Each step pays the potential's change besides the +1 of a solved
subtask, so an episode earns ``subtasks solved + potential(end) - potential(start)``: a
solved subtask is worth 1 whatever its path, an unsolved one at most 0.5.

``info``: ``robot_obs``, ``scene_obs``, ``tcp_target`` (the controller's accumulated target
position + euler, privileged), ``scene``, ``asset_mode``, ``renderer``, ``task``
(current), ``tasks`` (the chain), ``subtasks_solved``, ``task_success`` (34 bools in
``TASK_NAMES`` order: what was achieved since the current subtask started).
``reset(options=...)`` accepts ``scene``, ``robot_obs`` + ``scene_obs``, or a symbolic
``state`` (dict as in the evaluation), and ``tasks`` (a chain) or ``task``.

Start states: ``initial_state="eval"`` (default) draws one of the evaluation's 192 symbolic
states and builds it like the evaluation (scene D's block slots; the other scenes use the same
construction on their own surfaces) with yaws from ``np_random``; ``"random"`` is calvin_env's
random reset (articulations closed, lights off, blocks anywhere on the three surfaces);
``start_states=PATH`` draws one of the states recorded in that file instead (see
``start_states.py``: where each subtask of expert chains began; rows are drawn by the file's
weights, uniformly without them) and continues its chain. Chains
are drawn with the official preconditions from the symbolic state of the scene. A single task
starts from a state where it is possible: its block in the open drawer (``lift_*_drawer``),
two blocks stacked (``unstack_block``) or a block already held at the neutral pose
(``place_in_*``, ``stack_block``). Multi-scene IDs draw the scene per reset.

Difference from calvin_env: a reset applies ``robot_obs[14]`` (open when no ``robot_obs`` is
given) instead of keeping the previous gripper command.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_gym.core import arguments
from vla_gym.core.arguments import MAX_IMAGE_SIZE
from vla_gym.core.base import VLAEnv
from vla_gym.envs.calvin import symbolic
from vla_gym.envs.calvin.assets import find_calvin_root, resolve_mode, scene_files
from vla_gym.envs.calvin.cameras import DEFAULT_SIZES
from vla_gym.envs.calvin.language import Instructions
from vla_gym.envs.calvin.layout import NEUTRAL_TCP_EULER, SCENES, get_layout
from vla_gym.envs.calvin.start_states import load_start_states
from vla_gym.envs.calvin.tasks import ORACLES, TASK_NAMES, check_task, task_block, task_progress
from vla_gym.envs.calvin.world import CalvinWorld

ROBOT_OBS_DIM, SCENE_OBS_DIM = 15, 24
FLAT_DIM = ROBOT_OBS_DIM + SCENE_OBS_DIM + len(TASK_NAMES)
ABS_POS_LOW = np.array([-0.45, -0.45, 0.35])
ABS_POS_HIGH = np.array([0.45, 0.25, 0.85])
INITIAL_STATES = ("eval", "random")
ACTION_MODES = ("relative", "absolute")
GRASP_TASKS = ("place_in_slider", "place_in_drawer", "stack_block")  # start with a held block
MAX_STEPS_PER_SUBTASK = 100_000
REWARD_TYPES = ("sparse", "progress")
PROGRESS_WEIGHT = 0.5  # an unsolved subtask's shaping stays below a solved one's +1


class CalvinEnv(VLAEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        scenes: tuple[str, ...] | list[str] | str = ("D",),
        *,
        task: str | None = None,
        num_subtasks: int = 5,
        steps_per_subtask: int = 360,
        assets: str = "auto",
        calvin_root: str | None = None,
        instructions: str = "builtin",
        initial_state: str = "eval",
        start_states: str | None = None,
        action_mode: str = "relative",
        static_size: int = DEFAULT_SIZES["static"],
        gripper_size: int = DEFAULT_SIZES["gripper"],
        cameras: tuple[str, ...] = ("static", "gripper"),
        obs_mode: str = "vla",
        action_chunk: int = 1,
        max_steps: int | None = None,
        terminate_on_success: bool = True,
        reward_type: str = "sparse",
        render_mode: str | None = None,
        render_quality: str | None = "auto",
    ) -> None:
        self.reward_type = arguments.choice("reward_type", reward_type, REWARD_TYPES)
        self.scenes = tuple(arguments.names("scenes", scenes, SCENES))
        if task is not None and (not isinstance(task, str) or task not in ORACLES):
            raise ValueError(
                f"CALVIN: unknown task {task!r}; task must be None or one of: "
                f"{', '.join(TASK_NAMES)}"
            )
        self.initial_state = arguments.choice("initial_state", initial_state, INITIAL_STATES)
        self.start_states = None
        if start_states is not None:
            if task is not None:
                raise ValueError("CALVIN: start_states and task exclude each other")
            path = arguments.optional_path("start_states", start_states)
            self.start_states = load_start_states(path).of_scenes(self.scenes)
            if not len(self.start_states):
                raise ValueError(
                    f"CALVIN: {path} holds no start states of scenes {list(self.scenes)}"
                )
        self.action_mode = arguments.choice("action_mode", action_mode, ACTION_MODES)
        num_subtasks = arguments.integer("num_subtasks", num_subtasks, 1, 5)
        self.steps_per_subtask = arguments.integer(
            "steps_per_subtask", steps_per_subtask, 1, MAX_STEPS_PER_SUBTASK
        )
        max_steps = arguments.optional_integer("max_steps", max_steps, 1)
        sizes = {
            "static": arguments.integer("static_size", static_size, 1, MAX_IMAGE_SIZE),
            "gripper": arguments.integer("gripper_size", gripper_size, 1, MAX_IMAGE_SIZE),
        }
        cameras = arguments.names("cameras", cameras, tuple(sizes))
        self.task = task
        self.num_subtasks = 1 if task is not None else num_subtasks
        calvin_root = arguments.optional_path("calvin_root", calvin_root)
        self.asset_mode, self.calvin_root = resolve_mode(assets, calvin_root)
        text_root = self.calvin_root
        if text_root is None and instructions != "builtin":
            text_root = find_calvin_root(calvin_root)
        self.instructions = Instructions(instructions, text_root)
        self.camera_sizes = {name: sizes[name] for name in cameras}
        if max_steps is None:
            max_steps = self.steps_per_subtask * self.num_subtasks
        super().__init__(
            action_dim=7,
            state_dim=ROBOT_OBS_DIM,
            cameras={name: (s, s) for name, s in self.camera_sizes.items()},
            flat_dim=FLAT_DIM,
            obs_mode=obs_mode,
            action_chunk=action_chunk,
            max_episode_steps=max_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_quality=render_quality,
        )
        self._worlds: dict[str, CalvinWorld] = {}
        self.world: CalvinWorld | None = None
        self.scene = self.scenes[0]
        self.tasks: list[str] = []
        self.subtasks_solved = 0
        self._subtask_steps = 0
        self._start = self._now = None
        self._potential = 0.0
        self.instruction = ""

    # ------------------------------------------------------------- worlds
    def _world(self, scene: str) -> CalvinWorld:
        if scene not in self._worlds:
            layout = get_layout(scene)
            files = scene_files(layout, self.asset_mode, self.calvin_root)
            use_egl = self.render_quality == "full"
            self._worlds[scene] = CalvinWorld(layout, files, self.camera_sizes, use_egl)
        return self._worlds[scene]

    @property
    def renderer(self) -> str:
        return self.world.cameras.renderer_name if self.world is not None else "none"

    # -------------------------------------------------------------- hooks
    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        options = dict(options or {})
        unknown = set(options) - {"scene", "robot_obs", "scene_obs", "state", "tasks", "task"}
        if unknown:
            raise ValueError(f"CALVIN: unknown reset options {sorted(unknown)}")
        scene = options.get("scene", self.scenes[int(self.np_random.integers(len(self.scenes)))])
        if scene not in SCENES:
            raise ValueError(f"CALVIN: options['scene'] must be one of {SCENES}, got {scene!r}")
        self.scene, self.world = scene, self._world(scene)
        tasks = options.get("tasks")
        if tasks is None and (options.get("task") or self.task):
            tasks = [options.get("task") or self.task]
        if tasks is not None:
            tasks = list(tasks)
            bad = [t for t in tasks if t not in ORACLES]
            if bad:
                raise ValueError(f"CALVIN: unknown tasks {bad}")
        grasp = None
        if "scene_obs" in options or "robot_obs" in options:
            if "scene_obs" not in options:
                raise ValueError("CALVIN: options['robot_obs'] needs options['scene_obs'] too")
            self.world.reset(options.get("robot_obs"), np.asarray(options["scene_obs"]))
        elif "state" in options:
            robot_obs, scene_obs = symbolic.state_to_obs(options["state"], scene, self.np_random)
            self.world.reset(robot_obs, scene_obs)
        elif tasks is not None and len(tasks) == 1:
            grasp = self._reset_for_task(tasks[0])
        elif self.start_states is not None and tasks is None:
            tasks = self._reset_recorded_state(options.get("scene"))
        elif self.initial_state == "random":
            self.world.reset(None, None, self.np_random)
        else:
            self._reset_eval_state()
        if grasp is not None:
            self._grasp(grasp)
        if tasks is None:
            tasks = self._sample_chain()
        self.tasks = tasks
        self.subtasks_solved = 0
        self._subtask_steps = 0
        self._start = self._now = self.world.snapshot()
        self._potential = self._progress_potential()
        self._set_instruction()

    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        native = np.asarray(action, dtype=np.float64)
        if self.action_mode == "absolute":
            pos = ABS_POS_LOW + (native[:3] + 1) / 2 * (ABS_POS_HIGH - ABS_POS_LOW)
            euler = np.asarray(NEUTRAL_TCP_EULER) + np.pi * native[3:6]
            native = np.concatenate([pos, euler, native[6:]])
        self.world.step(native, absolute=self.action_mode == "absolute")
        self._now = self.world.snapshot()
        if self.subtasks_solved >= len(self.tasks):  # finished, still stepping
            return 0.0, True, False
        self._subtask_steps += 1
        solved = check_task(self.tasks[self.subtasks_solved], self._start, self._now)
        if solved:
            self.subtasks_solved += 1
            self._subtask_steps = 0
            self._start = self._now
        done = self.subtasks_solved == len(self.tasks)
        if solved and not done:
            self._set_instruction()
        reward = float(solved)
        if self.reward_type == "progress":
            potential = 0.0 if done else self._progress_potential()
            reward += potential - self._potential
            self._potential = potential
        if solved:
            return reward, done, done
        chain_failed = self.task is None and self._subtask_steps >= self.steps_per_subtask
        return reward, False, chain_failed

    def _progress_potential(self) -> float:
        """The shaping potential of the current subtask (``reward_type="progress"``)."""
        if self.reward_type != "progress":
            return 0.0
        task = self.current_task
        progress = task_progress(task, self._start, self._now)
        colour = task_block(task)
        if colour is not None:
            tcp = self.world.robot.tcp_pose()[0]
            reach = float(np.exp(-10.0 * np.linalg.norm(tcp - self._now.blocks[colour].pos)))
            progress = 0.75 * progress + 0.25 * reach
        return PROGRESS_WEIGHT * progress

    def _get_state(self) -> np.ndarray:
        return self.world.robot_obs().astype(np.float32)

    def _get_images(self) -> dict[str, np.ndarray]:
        return self.world.render()

    def _get_flat(self) -> np.ndarray:
        one_hot = np.zeros(len(TASK_NAMES), np.float32)
        one_hot[TASK_NAMES.index(self.current_task)] = 1
        return np.concatenate([self.world.robot_obs(), self.world.scene_obs(), one_hot]).astype(
            np.float32
        )

    def _extra_info(self) -> dict[str, Any]:
        achieved = np.array([oracle(self._start, self._now) for oracle in ORACLES.values()])
        return {
            "robot_obs": self.world.robot_obs(),
            "scene_obs": self.world.scene_obs(),
            "tcp_target": np.concatenate(
                [self.world.robot.target_pos, self.world.robot.target_euler]
            ),
            "scene": self.scene,
            "asset_mode": self.asset_mode,
            "renderer": self.renderer,
            "task": self.current_task,
            "tasks": tuple(self.tasks),
            "subtasks_solved": self.subtasks_solved,
            "task_success": achieved,
        }

    # ---------------------------------------------------------- episodes
    @property
    def current_task(self) -> str:
        return self.tasks[min(self.subtasks_solved, len(self.tasks) - 1)]

    def _set_instruction(self) -> None:
        self.instruction = self.instructions(self.current_task, self.np_random)

    def _random_eval_state(self, condition=None) -> dict[str, Any]:
        states = [dict(s) for s in symbolic.initial_states()]
        if condition is not None:
            states = [s for s in states if condition(s)]
        return states[int(self.np_random.integers(len(states)))]

    def _reset_eval_state(self) -> None:
        state = self._random_eval_state()
        self.world.reset(*symbolic.state_to_obs(state, self.scene, self.np_random))

    def _reset_recorded_state(self, scene: str | None) -> list[str]:
        """Reset to a row of ``start_states`` (of ``scene`` if given); returns the rest of its
        chain, at most ``num_subtasks`` subtasks."""
        states = self.start_states if scene is None else self.start_states.of_scenes((scene,))
        if not len(states):
            raise ValueError(f"CALVIN: start_states holds no state of scene {scene!r}")
        index = states.draw(self.np_random)
        self.scene = str(states.scene[index])
        self.world = self._world(self.scene)
        self.world.reset(states.robot_obs[index], states.scene_obs[index])
        return states.tasks(index, self.num_subtasks)

    def _sample_chain(self) -> list[str]:
        state = symbolic.state_from_scene_obs(self.world.scene_obs(), self.world.layout)
        return symbolic.sample_chain(state, self.np_random, length=self.num_subtasks)

    def _reset_for_task(self, task: str) -> str | None:
        """Reset to a state where ``task`` is possible; returns a block to grasp, if needed."""
        state: dict[str, Any]
        grasp = None
        if task in GRASP_TASKS:
            need_table = 2 if task == "stack_block" else 1
            state = self._random_eval_state(
                lambda s: [s[k] for k in symbolic.BLOCK_KEYS].count("table") >= need_table
            )
            if task == "place_in_drawer":
                state["drawer"] = "open"
            on_table = [k for k in symbolic.BLOCK_KEYS if state[k] == "table"]
            grasp = on_table[int(self.np_random.integers(len(on_table)))][: -len("_block")]
        elif task.startswith("lift_") and task.endswith("_drawer"):
            state = self._random_eval_state()
            state["drawer"] = "open"
            state[task.split("_")[1] + "_block"] = "drawer"
        elif task == "unstack_block":
            state = self._random_eval_state(
                lambda s: [s[k] for k in symbolic.BLOCK_KEYS].count("table") == 2
            )
            on_table = [k for k in symbolic.BLOCK_KEYS if state[k] == "table"]
            order = self.np_random.permutation(2)
            state[on_table[order[0]]], state[on_table[order[1]]] = "stacked_top", "stacked_bottom"
        else:
            state = self._random_eval_state(lambda s: symbolic.task_valid(s, task))
        self.world.reset(*symbolic.state_to_obs(state, self.scene, self.np_random))
        return grasp

    def _grasp(self, colour: str) -> None:
        """Put ``colour`` between the open fingers at the TCP and close the gripper on it."""
        world = self.world
        p, robot = world.p, world.robot
        pos, euler = robot.tcp_pose()
        rot = np.array(p.getMatrixFromQuaternion(p.getQuaternionFromEuler(euler.tolist()))).reshape(
            3, 3
        )
        yaw = float(np.arctan2(-rot[0, 1], rot[1, 1]))  # block y axis along the finger axis
        block = world.scene.blocks[colour]
        p.resetBasePositionAndOrientation(
            block, pos.tolist(), p.getQuaternionFromEuler([0, 0, yaw])
        )
        p.resetBaseVelocity(block, [0, 0, 0], [0, 0, 0])
        hold = np.zeros(7)
        hold[6] = -1.0
        for _ in range(6):
            world.step(hold)

    # ------------------------------------------------------------- misc
    def scene_info(self):
        """The current contact/pose snapshot the oracles read."""
        return self.world.snapshot()

    def close(self) -> None:
        for world in self._worlds.values():
            world.close()
        self._worlds.clear()
        self.world = None
        super().close()
