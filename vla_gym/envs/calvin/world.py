"""One PyBullet client holding a CALVIN scene, the robot and the cameras; one control step is
action -> IK -> 8 x 240 Hz physics -> light logic (spec §3.3, §8.1)."""

from __future__ import annotations

import contextlib

import numpy as np

from vla_gym.core.deps import require
from vla_gym.envs.calvin.assets import SceneFiles
from vla_gym.envs.calvin.cameras import Cameras, load_egl_plugin
from vla_gym.envs.calvin.layout import GRAVITY, PHYSICS_HZ, SUBSTEPS, SceneLayout
from vla_gym.envs.calvin.robot import PandaRobot
from vla_gym.envs.calvin.scene import PlayTable, SceneSnapshot


class CalvinWorld:
    """Scene + robot + cameras in their own PyBullet DIRECT client."""

    def __init__(
        self, layout: SceneLayout, files: SceneFiles, camera_sizes: dict[str, int], use_egl: bool
    ) -> None:
        require("pybullet", extra="calvin", what="CALVIN")
        import pybullet
        from pybullet_utils.bullet_client import BulletClient

        self.p = BulletClient(connection_mode=pybullet.DIRECT)
        self.p.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self.p.setGravity(0, 0, GRAVITY)
        self.p.setTimeStep(1.0 / PHYSICS_HZ)
        self.egl = bool(use_egl and load_egl_plugin(self.p))
        self.layout, self.files = layout, files
        # The robot first, as calvin_env loads it: the CPU renderer draws in load order.
        self.robot = PandaRobot(self.p, files.robot)
        self.scene = PlayTable(self.p, layout, files)
        self.cameras = Cameras(self.p, camera_sizes, self.egl, robot=self.robot.uid)
        # A snapshot of the freshly built world: restoring it first makes every reset (and the
        # contact solver's warm start) independent of the previous episode.
        self._pristine = self.p.saveState()

    def reset(
        self, robot_obs: np.ndarray | None, scene_obs: np.ndarray | None, np_random=None
    ) -> None:
        """CALVIN's reset: scene, robot, then one physics step (spec §7)."""
        # Parking the blocks for one step drops their cached contacts (the solver's warm start),
        # which restoreState alone keeps: resets are then exactly reproducible.
        self.scene.park_blocks()
        self.p.stepSimulation()
        self.p.restoreState(self._pristine)
        if scene_obs is None:
            self.scene.random_reset(np_random)
        else:
            self.scene.reset(scene_obs)
        self.robot.reset(robot_obs)
        self.p.stepSimulation()
        # Articulations moved by resetJointState only get fresh bounding boxes in the step, after
        # its collision pass: refresh the contacts so the start snapshot sees them.
        self.p.performCollisionDetection()

    def step(self, action: np.ndarray, absolute: bool = False) -> None:
        if absolute:
            self.robot.apply_absolute(action[:3], action[3:6], action[6])
        else:
            self.robot.apply_relative(action)
        for _ in range(SUBSTEPS):
            self.p.stepSimulation()
        self.scene.step()

    def snapshot(self) -> SceneSnapshot:
        return self.scene.snapshot(self.robot.uid)

    def robot_obs(self) -> np.ndarray:
        return self.robot.robot_obs()

    def scene_obs(self) -> np.ndarray:
        return self.scene.scene_obs()

    def render(self) -> dict[str, np.ndarray]:
        return self.cameras.render(self.robot.camera_pose())

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already disconnected
            self.p.disconnect()
