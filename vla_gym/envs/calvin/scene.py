"""The CALVIN play table in a PyBullet client: desk articulations, light logic, blocks,
``scene_obs`` and the contact snapshot the task oracles read (spec §1, §2, §3.2, §7).

``scene_obs`` (24) = door, drawer, button, switch joint positions; lightbulb and LED logical
states; then three blocks (x, y, z, euler x, y, z) in the scene's YAML order
(``layout.block_order``: red, blue, pink for B and D).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vla_gym.envs.calvin.assets import SceneFiles
from vla_gym.envs.calvin.layout import (
    ARTICULATION_FORCE,
    BLOCKS,
    BUTTON_PRESSED,
    LIGHT_OFF_COLOUR,
    LIGHT_ON_COLOURS,
    PEDESTAL,
    SWITCH_ON,
    SceneLayout,
)

SCENE_OBS_DIM = 24


def parking_spot(index: int) -> tuple[float, float, float]:
    """Far from everything and from each other: blocks wait here between episodes."""
    return (5.0 + 2.0 * index, 5.0, 1.0)


def scene_obs_labels(layout: SceneLayout) -> tuple[str, ...]:
    blocks = [
        f"{colour}_{axis}"
        for colour in layout.block_order
        for axis in ("x", "y", "z", "roll", "pitch", "yaw")
    ]
    return ("door", "drawer", "button", "switch", "lightbulb", "led", *blocks)


@dataclass
class BlockSnapshot:
    pos: np.ndarray
    orn: np.ndarray  # quaternion xyzw
    lin_vel: np.ndarray
    ang_vel: np.ndarray
    contacts: frozenset[tuple[str, str]]  # (body, link) pairs touched, e.g. ("table", "plank_link")


@dataclass
class SceneSnapshot:
    """What the task oracles compare between the start and the end of a subtask."""

    door: float
    drawer: float
    lightbulb: int
    led: int
    blocks: dict[str, BlockSnapshot]
    robot_contacts: frozenset[tuple[str, str]]


class PlayTable:
    """Desk, blocks and lights of one scene; the robot is loaded separately."""

    def __init__(self, client, layout: SceneLayout, files: SceneFiles) -> None:
        self.p = client
        self.layout = layout
        # calvin_env's load order (after the robot): the CPU renderer draws bodies in load order
        # and shades only fragments nearer than what is already drawn, so front-most first.
        self._add_pedestal()
        self.blocks = {
            colour: client.loadURDF(
                str(files.blocks[colour]), parking_spot(i), globalScaling=files.scaling
            )
            for i, colour in enumerate(BLOCKS)
        }
        self.table = client.loadURDF(
            str(files.table),
            [0, 0, 0],
            [0, 0, 0, 1],
            useFixedBase=True,
            globalScaling=files.scaling,
        )
        self.plane = client.loadURDF(str(files.plane), useFixedBase=True)
        self.joints: dict[str, int] = {}
        self.table_links = {-1: "base_link"}
        for j in range(client.getNumJoints(self.table)):
            info = client.getJointInfo(self.table, j)
            self.joints[info[1].decode()] = j
            self.table_links[j] = info[12].decode()
        self.link_ids = {name: j for j, name in self.table_links.items()}
        self.door, self.drawer = self.joints["base__slide"], self.joints["base__drawer"]
        self.button, self.switch = self.joints["base__button"], self.joints["base__switch"]
        for joint in (self.door, self.drawer, self.switch):
            client.setJointMotorControl2(
                self.table,
                joint,
                client.VELOCITY_CONTROL,
                targetVelocity=0,
                force=ARTICULATION_FORCE,
            )
        client.setJointMotorControl2(  # the button springs back
            self.table,
            self.button,
            client.POSITION_CONTROL,
            targetPosition=0,
            force=ARTICULATION_FORCE,
        )
        self.body_names = {self.table: "table", self.plane: "plane"}
        self.body_names.update({uid: f"block_{colour}" for colour, uid in self.blocks.items()})
        self.lights = {"lightbulb": 0, "led": 0}
        self._button_was_pressed = False
        self._switch_on = False

    def _add_pedestal(self) -> None:
        shape = self.p.createVisualShape(
            self.p.GEOM_CYLINDER,
            radius=PEDESTAL["radius"],
            length=PEDESTAL["length"],
            rgbaColor=[1, 1, 1, 1],
        )
        self.p.createMultiBody(
            baseMass=0, baseVisualShapeIndex=shape, basePosition=PEDESTAL["centre"]
        )

    # ----------------------------------------------------------------- state
    def park_blocks(self) -> None:
        for i, uid in enumerate(self.blocks.values()):
            self.p.resetBasePositionAndOrientation(uid, parking_spot(i), [0, 0, 0, 1])

    def joint_state(self, joint: int) -> float:
        return float(self.p.getJointState(self.table, joint)[0])

    def set_light(self, name: str, on: int) -> None:
        self.lights[name] = int(on)
        link = self.link_ids["light_link" if name == "lightbulb" else "led_link"]
        colour = LIGHT_ON_COLOURS[name] if on else LIGHT_OFF_COLOUR
        self.p.changeVisualShape(self.table, link, rgbaColor=colour)

    def reset(self, scene_obs: np.ndarray) -> None:
        """Set every joint, light and block from a 24-D ``scene_obs`` (no physics step)."""
        scene_obs = np.asarray(scene_obs, dtype=np.float64)
        if scene_obs.shape != (SCENE_OBS_DIM,):
            raise ValueError(f"CALVIN: scene_obs must have shape (24,), got {scene_obs.shape}")
        for joint, value in zip(
            (self.door, self.drawer, self.button, self.switch), scene_obs[:4], strict=True
        ):
            self.p.resetJointState(self.table, joint, float(value))
        self.set_light("lightbulb", int(round(scene_obs[4])))
        self.set_light("led", int(round(scene_obs[5])))
        # calvin_env HEAD: the button's toggle state follows the LED; the switch starts "off"
        # and is reconciled by the first step (spec §7, §8.4a).
        self._button_was_pressed = self.joint_state(self.button) > BUTTON_PRESSED
        self._switch_on = False
        for slot, colour in enumerate(self.layout.block_order):
            pose = scene_obs[6 + 6 * slot : 12 + 6 * slot]
            quat = self.p.getQuaternionFromEuler(pose[3:].tolist())
            self.p.resetBasePositionAndOrientation(self.blocks[colour], pose[:3].tolist(), quat)
            self.p.resetBaseVelocity(self.blocks[colour], [0, 0, 0], [0, 0, 0])

    def random_reset(self, np_random: np.random.Generator, max_tries: int = 1000) -> None:
        """Articulations at 0, lights off, blocks on random surfaces without touching (§7)."""
        obs = np.zeros(SCENE_OBS_DIM)
        surfaces = self.layout.surfaces
        names = list(surfaces)
        for _ in range(max_tries):
            for slot in range(3):
                low, high = surfaces[names[np_random.integers(len(names))]]
                obs[6 + 6 * slot : 9 + 6 * slot] = np_random.uniform(low, high)
                obs[11 + 6 * slot] = np_random.uniform(-np.pi, np.pi)
            self.reset(obs)
            self.p.stepSimulation()
            pairs = itertools.combinations(self.blocks.values(), 2)
            if not any(self.p.getContactPoints(bodyA=a, bodyB=b) for a, b in pairs):
                return

    def step(self) -> None:
        """Button/switch -> light logic, run after physics each env step (spec §1.3)."""
        pressed = self.joint_state(self.button) > BUTTON_PRESSED
        if pressed and not self._button_was_pressed:  # rising edge toggles the LED
            self.set_light("led", 1 - self.lights["led"])
        self._button_was_pressed = pressed
        switch_on = self.joint_state(self.switch) > SWITCH_ON
        if switch_on and not self._switch_on:
            self.set_light("lightbulb", 1)
        elif not switch_on and self._switch_on:
            self.set_light("lightbulb", 0)
        self._switch_on = switch_on

    def scene_obs(self) -> np.ndarray:
        joints = [self.joint_state(j) for j in (self.door, self.drawer, self.button, self.switch)]
        blocks = []
        for colour in self.layout.block_order:
            pos, quat = self.p.getBasePositionAndOrientation(self.blocks[colour])
            blocks.extend([*pos, *self.p.getEulerFromQuaternion(quat)])
        return np.array([*joints, self.lights["lightbulb"], self.lights["led"], *blocks])

    def block_pose(self, colour: str) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = self.p.getBasePositionAndOrientation(self.blocks[colour])
        return np.array(pos), np.array(quat)

    def _contacts(self, uid: int, robot_uid: int) -> frozenset[tuple[str, str]]:
        found = set()
        for contact in self.p.getContactPoints(bodyA=uid):
            body, link = contact[2], contact[4]
            if body == robot_uid:
                found.add(("robot", str(link)))
            elif body == self.table:
                found.add(("table", self.table_links[link]))
            else:
                found.add((self.body_names.get(body, str(body)), str(link)))
        return frozenset(found)

    def snapshot(self, robot_uid: int) -> SceneSnapshot:
        blocks = {}
        for colour, uid in self.blocks.items():
            pos, quat = self.p.getBasePositionAndOrientation(uid)
            lin, ang = self.p.getBaseVelocity(uid)
            blocks[colour] = BlockSnapshot(
                np.array(pos),
                np.array(quat),
                np.array(lin),
                np.array(ang),
                self._contacts(uid, robot_uid),
            )
        return SceneSnapshot(
            door=self.joint_state(self.door),
            drawer=self.joint_state(self.drawer),
            lightbulb=self.lights["lightbulb"],
            led=self.lights["led"],
            blocks=blocks,
            robot_contacts=self._robot_contacts(robot_uid),
        )

    def _robot_contacts(self, robot_uid: int) -> frozenset[tuple[str, str]]:
        found = set()
        for contact in self.p.getContactPoints(bodyA=robot_uid):
            body, link = contact[2], contact[4]
            if body == self.table:
                found.add(("table", self.table_links[link]))
            elif body != robot_uid:
                found.add((self.body_names.get(body, str(body)), str(link)))
        return frozenset(found)
