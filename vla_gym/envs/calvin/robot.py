"""CALVIN's Franka Panda: reset, relative/absolute Cartesian control through null-space IK, and
the 15-D ``robot_obs`` (spec §3).

``robot_obs`` = TCP position (3), TCP euler xyz (3), gripper opening width (1), the 7 arm joint
angles, the last gripper action (-1 closed, 1 open).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_gym.envs.calvin.layout import (
    ARM_FORCE,
    ARM_LOWER,
    ARM_MAX_VELOCITY,
    ARM_UPPER,
    FINGER_OPEN,
    GRIPPER_CLOSE_FORCE,
    GRIPPER_MAX_VELOCITY,
    GRIPPER_OPEN_FORCE,
    MAX_REL_ORN,
    MAX_REL_POS,
    NEUTRAL_JOINTS,
    ROBOT_BASE,
)

ARM_JOINTS = tuple(range(7))
IK_REST_POSES = [*NEUTRAL_JOINTS, FINGER_OPEN, FINGER_OPEN]


class PandaRobot:
    """The arm, its internal target pose and its gripper, in one PyBullet client."""

    def __init__(self, client, urdf: Path) -> None:
        self.p = client
        self.uid = client.loadURDF(str(urdf), ROBOT_BASE, [0, 0, 0, 1], useFixedBase=True)
        names = {}
        for j in range(client.getNumJoints(self.uid)):
            info = client.getJointInfo(self.uid, j)
            names[info[12].decode()] = j
        self.fingers = (names["panda_leftfinger"], names["panda_rightfinger"])
        self.tcp_link = names["tcp"]
        self.camera_link = names["gripper_cam"]
        # Finger coupling (spec §3.1): a gear constraint keeps both fingers symmetric.
        gear = client.createConstraint(
            self.uid,
            self.fingers[0],
            self.uid,
            self.fingers[1],
            jointType=client.JOINT_GEAR,
            jointAxis=[1, 0, 0],
            parentFramePosition=[0, 0, 0],
            childFramePosition=[0, 0, 0],
        )
        client.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50)
        self.gripper_action = 1.0
        self.target_pos = np.zeros(3)
        self.target_euler = np.zeros(3)

    # ----------------------------------------------------------------- reset
    def reset(self, robot_obs: np.ndarray | None = None) -> None:
        """Neutral pose, or the joints and gripper width of a ``robot_obs``.

        Unlike calvin_env (which keeps the previous gripper action), the gripper action is set
        from ``robot_obs[14]`` (open when no ``robot_obs`` is given), so an episode never starts
        with a stale "close" command.
        """
        if robot_obs is None:
            joints, finger, self.gripper_action = NEUTRAL_JOINTS, FINGER_OPEN, 1.0
        else:
            robot_obs = np.asarray(robot_obs, dtype=np.float64)
            if robot_obs.shape != (15,):
                raise ValueError(f"CALVIN: robot_obs must have shape (15,), got {robot_obs.shape}")
            joints, finger = robot_obs[7:14], robot_obs[6] / 2
            self.gripper_action = 1.0 if robot_obs[14] > 0 else -1.0
        for j, q in zip(ARM_JOINTS, joints, strict=True):
            self.p.resetJointState(self.uid, j, float(q))
            self.p.setJointMotorControl2(
                self.uid,
                j,
                self.p.POSITION_CONTROL,
                targetPosition=float(q),
                force=ARM_FORCE,
                maxVelocity=ARM_MAX_VELOCITY,
            )
        for f in self.fingers:
            self.p.resetJointState(self.uid, f, float(finger))
        self._control_gripper(self.gripper_action)
        pos, euler = self.tcp_pose()
        self.target_pos, self.target_euler = pos, euler

    # --------------------------------------------------------------- control
    def apply_relative(self, action: np.ndarray) -> None:
        """``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` in [-1, 1]: accumulate on the target."""
        self.target_pos = self.target_pos + MAX_REL_POS * np.asarray(action[:3], dtype=np.float64)
        self.target_euler = self.target_euler + MAX_REL_ORN * np.asarray(action[3:6], np.float64)
        self._apply_target(action[6])

    def apply_absolute(self, pos, euler, gripper: float) -> None:
        """Go to an absolute TCP pose (world position, euler xyz) with a gripper command."""
        self.target_pos = np.asarray(pos, dtype=np.float64)
        self.target_euler = np.asarray(euler, dtype=np.float64)
        self._apply_target(gripper)

    def _apply_target(self, gripper: float) -> None:
        quat = self.p.getQuaternionFromEuler(self.target_euler.tolist())
        solution = self.p.calculateInverseKinematics(
            self.uid,
            self.tcp_link,
            self.target_pos.tolist(),
            quat,
            lowerLimits=[-7.0] * 9,
            upperLimits=[7.0] * 9,
            jointRanges=[7.0] * 9,
            restPoses=IK_REST_POSES,
        )
        joints = np.clip(solution[:7], ARM_LOWER, ARM_UPPER)
        for j, q in zip(ARM_JOINTS, joints, strict=True):
            self.p.setJointMotorControl2(
                self.uid,
                j,
                self.p.POSITION_CONTROL,
                targetPosition=float(q),
                force=ARM_FORCE,
                maxVelocity=ARM_MAX_VELOCITY,
            )
        # calvin_evaluation binarises the gripper: open if > 0, else close.
        self.gripper_action = 1.0 if gripper > 0 else -1.0
        self._control_gripper(self.gripper_action)

    def _control_gripper(self, action: float) -> None:
        target, force = (
            (FINGER_OPEN, GRIPPER_OPEN_FORCE) if action > 0 else (0.0, GRIPPER_CLOSE_FORCE)
        )
        for f in self.fingers:
            self.p.setJointMotorControl2(
                self.uid,
                f,
                self.p.POSITION_CONTROL,
                targetPosition=target,
                force=force,
                maxVelocity=GRIPPER_MAX_VELOCITY,
            )

    # ----------------------------------------------------------- observation
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.p.getLinkState(self.uid, self.tcp_link, computeForwardKinematics=True)
        return np.array(state[0]), np.array(self.p.getEulerFromQuaternion(state[1]))

    def camera_pose(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        state = self.p.getLinkState(self.uid, self.camera_link, computeForwardKinematics=True)
        return state[0], state[1]

    def robot_obs(self) -> np.ndarray:
        pos, euler = self.tcp_pose()
        arm = [s[0] for s in self.p.getJointStates(self.uid, ARM_JOINTS)]
        width = sum(s[0] for s in self.p.getJointStates(self.uid, self.fingers))
        return np.concatenate([pos, euler, [width], arm, [self.gripper_action]])
