"""`VLA/PandaPickCube-v0` and `VLA/PandaPickCubeVision-v0`.

A Franka Panda with a Robotiq 2F-85 gripper picks up a 4 cm cube on MuJoCo. The MJCF scene and
the operational-space controller come from the ``gym-hil`` package (a dependency, not copied);
the task layout follows SERL's ``franka_sim`` PandaPickCube:

* action (4-D, in [-1, 1]): ``(dx, dy, dz)`` x 0.1 m moves the controller's Cartesian target
  (clipped to the workspace box ``[0.2, 0.6] x [-0.3, 0.3] x [0, 0.5]`` m), ``grasp`` adds to the
  gripper command (0 open .. 1 closed). Orientation stays gripper-down. Control at 50 Hz
  (``control_dt=0.02``, physics 0.002 s).
* state (10-D, SERL's sorted keys): block position (3), gripper command (1), TCP position (3),
  TCP linear velocity (3), with the ``front`` image (128 x 128 default) in ``obs_mode="vla"``.
  The Vision variant observes ``front`` and ``wrist`` images and the 7-D proprio part (no block
  position). ``obs_mode="flat"`` is the 10-D state for both (no rendering at all).
* reward: ``0.3 * exp(-20 * |block - tcp|) + 0.7 * clip(lift / 0.2, 0, 1)``; success when the
  block is 0.2 m above its initial height (terminates by default, as gym-hil's does; for RL on
  the dense reward pass ``terminate_on_success=False``, else hovering by the cube for a whole
  episode earns more than lifting it and ending the episode). ``reward_type="sparse"`` gives
  1.0 on the step the block reaches the success height and 0 otherwise: the reward that counts
  what evaluation counts, with success terminating. ``reward_type="progress"`` pays the change
  of the dense reward's potential, ``phi(next) - phi(now)``, so an episode earns ``phi(end) -
  phi(start)``: up to 1.0 for a lift, at most 0.3 for hovering by the cube however long (the
  dense reward's hovering loophole closed, its guidance kept). ``max_steps=100`` control
  steps per episode, enforced inside chunks (``gym.make``'s own ``max_episode_steps`` instead adds
  Gymnasium's TimeLimit, which counts ``step`` calls, i.e. chunks).
* reset: arm at a fixed home pose; block xy uniform in ``[0.25, 0.55] x [-0.25, 0.25]`` drawn
  from the env's seeded RNG (gym-hil ignores the seed; we do not).

In ``render_quality="fast"`` meshes above ``mesh_budget`` triangles (default 500) are drawn
decimated (:mod:`vla_gym.core.decimate`; physics is untouched); ``mesh_budget=None`` draws the
original 192k-triangle scene.

``info`` carries ``block_pos``, ``tcp_pos``, ``tcp_target`` (the controller's Cartesian target)
and ``gripper`` (privileged, for scripted experts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.core import arguments
from vla_gym.core.base import VLAEnv
from vla_gym.core.decimate import DEFAULT_MESH_BUDGET, check_mesh_budget
from vla_gym.core.deps import require

_HOME_QPOS = np.array([0.0, -0.785, 0.0, -2.35, 0.0, 1.57, np.pi / 4])  # SERL home, TCP ~0.44 m up
_WORKSPACE = np.array([[0.2, -0.3, 0.0], [0.6, 0.3, 0.5]])
_BLOCK_XY_RANGE = np.array([[0.25, -0.25], [0.55, 0.25]])
_ACTION_SCALE = 0.1  # metres per unit of action
_MAX_GRIPPER_CTRL = 255.0
_LIFT_SUCCESS = 0.2  # metres above the initial block height
INSTRUCTION = "pick up the cube"
REWARD_TYPES = ("dense", "sparse", "progress")
MAX_CONTROL_DT = 1.0  # seconds per control step; physics_dt may not exceed it


class PandaPickCubeEnv(VLAEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        vision: bool = False,
        *,
        obs_mode: str = "vla",
        action_chunk: int = 1,
        max_steps: int = 100,
        image_size: int | tuple[int, int] = 128,
        control_dt: float = 0.02,
        physics_dt: float = 0.002,
        terminate_on_success: bool = True,
        reward_type: str = "dense",
        render_mode: str | None = None,
        render_quality: str | None = "auto",
        mesh_budget: int | None = DEFAULT_MESH_BUDGET,
    ) -> None:
        self.vision = arguments.flag("vision", vision)
        height, width = arguments.image_size("image_size", image_size)
        control_dt = arguments.number("control_dt", control_dt, 0.0, MAX_CONTROL_DT, low_open=True)
        physics_dt = arguments.number("physics_dt", physics_dt, 0.0, control_dt, low_open=True)
        self.reward_type = arguments.choice("reward_type", reward_type, REWARD_TYPES)
        mujoco = require("mujoco", extra="panda", what="VLA/PandaPickCube")
        require("gym_hil", extra="panda", what="VLA/PandaPickCube")
        from gym_hil.controllers import opspace

        self.mesh_budget = check_mesh_budget(mesh_budget)
        self._mj = mujoco
        self._opspace = opspace
        # The VLA schema needs at least one image: the state variant observes the front camera.
        cameras = {"front": (height, width)}
        if vision:
            cameras["wrist"] = (height, width)
        super().__init__(
            action_dim=4,
            state_dim=7 if vision else 10,
            flat_dim=10,
            cameras=cameras,
            obs_mode=obs_mode,
            action_chunk=action_chunk,
            max_episode_steps=max_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_quality=render_quality,
        )
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / control_dt))}
        self.instruction = INSTRUCTION

        self.model = mujoco.MjModel.from_xml_path(str(_scene_path()))
        self.model.opt.timestep = physics_dt
        self.data = mujoco.MjData(self.model)
        self._substeps = max(1, int(round(control_dt / physics_dt)))
        self._arm_dofs = np.array([self.model.joint(f"joint{i}").id for i in range(1, 8)])
        self._arm_actuators = np.array(
            [self.model.actuator(f"actuator{i}").id for i in range(1, 8)]
        )
        self._gripper_actuator = self.model.actuator("fingers_actuator").id
        self._pinch_site = self.model.site("pinch").id
        self._block_joint = self.model.jnt_qposadr[self.model.joint("block").id]
        self._block_half = float(self.model.geom("block").size[2])
        self._z_init = self._block_half

        # Observation cameras, plus the front camera for render() on the state variant.
        self._camera_specs = {
            name: (camera, height, width)
            for name, camera in {"front": "front", "wrist": "handcam_rgb"}.items()
        }
        self._renderer = None  # made on first use: flat-mode envs never render

    # ------------------------------------------------------------------ hooks
    def _reset_sim(self, options: dict[str, Any] | None) -> None:
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_dofs] = _HOME_QPOS
        block_xy = self.np_random.uniform(*_BLOCK_XY_RANGE)
        if options and "block_xy" in options:
            block_xy = np.asarray(options["block_xy"], dtype=np.float64).reshape(2)
        adr = self._block_joint
        self.data.qpos[adr : adr + 3] = (*block_xy, self._block_half)
        self.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
        mj.mj_forward(self.model, self.data)
        self.data.mocap_pos[0] = self.data.site_xpos[self._pinch_site]
        self._z_init = float(self._block_pos()[2])
        self._last_potential = self._potential(self._block_pos(), self._tcp_pos())

    def _step_sim(self, action: np.ndarray) -> tuple[float, bool, bool]:
        target = self.data.mocap_pos[0] + action[:3] * _ACTION_SCALE
        self.data.mocap_pos[0] = np.clip(target, *_WORKSPACE)
        grip = self.data.ctrl[self._gripper_actuator] / _MAX_GRIPPER_CTRL
        self.data.ctrl[self._gripper_actuator] = np.clip(grip + action[3], 0.0, 1.0) * 255.0
        for _ in range(self._substeps):
            torque = self._opspace(
                model=self.model,
                data=self.data,
                site_id=self._pinch_site,
                dof_ids=self._arm_dofs,
                pos=self.data.mocap_pos[0],
                ori=self.data.mocap_quat[0],
                joint=_HOME_QPOS,
                gravity_comp=True,
            )
            self.data.ctrl[self._arm_actuators] = torque
            self._mj.mj_step(self.model, self.data)
        block, tcp = self._block_pos(), self._tcp_pos()
        lift = block[2] - self._z_init
        success = bool(lift >= _LIFT_SUCCESS)
        if self.reward_type == "sparse":
            return float(success), success, False
        potential = self._potential(block, tcp)
        if self.reward_type == "progress":
            reward, self._last_potential = potential - self._last_potential, potential
            return float(reward), success, False
        return float(potential), success, False

    def _potential(self, block: np.ndarray, tcp: np.ndarray) -> float:
        """The dense reward: near the cube is worth up to 0.3, the lift up to 0.7 more."""
        lift = block[2] - self._z_init
        reach = 0.3 * np.exp(-20.0 * np.linalg.norm(block - tcp))
        return float(reach + 0.7 * np.clip(lift / _LIFT_SUCCESS, 0.0, 1.0))

    def _get_state(self) -> np.ndarray:
        full = self._full_state()
        return full[3:] if self.vision else full

    def _get_flat(self) -> np.ndarray:
        return self._full_state()

    def _get_images(self) -> dict[str, np.ndarray]:
        return {name: self._cameras().render(self.data, name) for name in self.cameras}

    def _extra_info(self) -> dict[str, Any]:
        return {
            "block_pos": self._block_pos().astype(np.float32),
            "tcp_pos": self._tcp_pos().astype(np.float32),
            "tcp_target": self.data.mocap_pos[0].astype(np.float32),
            "gripper": np.float32(self._gripper()),
        }

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()

    # ---------------------------------------------------------------- helpers
    def _cameras(self):
        if self._renderer is None:
            from vla_gym.core.mujoco_rendering import MujocoCameras

            self._renderer = MujocoCameras(
                self.model, self._camera_specs, self.render_quality, mesh_budget=self.mesh_budget
            )
        return self._renderer

    def _block_pos(self) -> np.ndarray:
        return self.data.qpos[self._block_joint : self._block_joint + 3].copy()

    def _tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._pinch_site].copy()

    def _gripper(self) -> float:
        return float(self.data.ctrl[self._gripper_actuator] / _MAX_GRIPPER_CTRL)

    def _tcp_velocity(self) -> np.ndarray:
        velocity = np.zeros(6)
        self._mj.mj_objectVelocity(
            self.model, self.data, self._mj.mjtObj.mjOBJ_SITE, self._pinch_site, velocity, 0
        )
        return velocity[3:]  # linear part, world frame

    def _full_state(self) -> np.ndarray:
        return np.concatenate(
            [self._block_pos(), [self._gripper()], self._tcp_pos(), self._tcp_velocity()]
        ).astype(np.float32)


def _scene_path() -> Path:
    import gym_hil

    return Path(gym_hil.__file__).parent / "assets" / "scene.xml"
