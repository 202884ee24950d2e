"""CALVIN's numbers: the fixed robot set-up and the per-scene layouts of tables A, B, C and D.

Every value is in world units after CALVIN's ``global_scaling = 0.8`` (see the project's
CALVIN spec, sections 1-3). Blocks are named by colour everywhere; ``block_order`` is the
scene's YAML order, which is the order of the three block slots in ``scene_obs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCENES = ("A", "B", "C", "D")
BLOCKS = ("red", "blue", "pink")

# --- physics and control (spec §1, §3.3)
CONTROL_HZ = 30
PHYSICS_HZ = 240
SUBSTEPS = PHYSICS_HZ // CONTROL_HZ  # 8 stepSimulation calls per env step
GRAVITY = -9.8
MAX_REL_POS = 0.02  # metres per unit of relative action per step
MAX_REL_ORN = 0.05  # radians per unit of relative action per step

# --- robot (spec §1, §3)
ROBOT_BASE = (-0.34, -0.46, 0.24)
NEUTRAL_JOINTS = (
    -1.21779206,
    1.03987646,
    2.11978261,
    -2.34205014,
    -0.87015947,
    1.64119353,
    0.55344866,
)
NEUTRAL_TCP_POS = (0.02587, -0.23131, 0.57128)
NEUTRAL_TCP_EULER = (3.09045, -0.02909, 1.50014)
FINGER_OPEN = 0.04  # each finger; opening width = q9 + q11
ARM_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
ARM_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
ARM_FORCE = 200.0
ARM_MAX_VELOCITY = 2.0
GRIPPER_OPEN_FORCE = 2.0
GRIPPER_CLOSE_FORCE = 200.0
GRIPPER_MAX_VELOCITY = 1.0
TCP_OFFSET = 0.14  # tcp = panda_hand + (0, 0, 0.14)
PEDESTAL = {"radius": 0.13, "length": 0.24, "centre": (-0.39, -0.46, 0.12)}

# --- articulation thresholds (spec §1.2)
BUTTON_LIMIT = 0.02
SWITCH_LIMIT = 0.088
DRAWER_LIMIT = 0.22
BUTTON_PRESSED = BUTTON_LIMIT / 2
SWITCH_ON = SWITCH_LIMIT / 2
ARTICULATION_FORCE = 4.0  # velocity control with zero target: acts as friction

# --- desk surfaces
DESK_TOP = 0.44
BLOCK_REST_Z = 0.46
BLOCK_SIZES = {
    "small": (0.04, 0.04, 0.04),
    "middle": (0.056, 0.04, 0.04),
    "big": (0.08, 0.04, 0.04),
}
BLOCK_COLOURS = {
    "red": (1.0, 0.0, 0.0, 1.0),
    "blue": (0.0, 0.0, 1.0, 1.0),
    "pink": (1.0, 0.0, 1.0, 1.0),
}
BLOCK_MASS = 1.0
BLOCK_FRICTION = 0.7
LIGHT_ON_COLOURS = {"lightbulb": (1.0, 1.0, 0.0, 1.0), "led": (0.0, 1.0, 0.0, 1.0)}
LIGHT_OFF_COLOUR = (1.0, 1.0, 1.0, 1.0)

# --- the official evaluation's fixed robot state and D block slots (spec §6.3)
EVAL_ROBOT_OBS = np.array(
    [
        0.02586889,
        -0.2313129,
        0.5712808,
        3.09045411,
        -0.02908596,
        1.50013585,
        0.07999963,
        -1.21779124,
        1.03987629,
        2.11978254,
        -2.34205014,
        -0.87015899,
        1.64119093,
        0.55344928,
        1.0,
    ]
)

ROBOT_OBS_LABELS = (
    "tcp_x",
    "tcp_y",
    "tcp_z",
    "tcp_roll",
    "tcp_pitch",
    "tcp_yaw",
    "gripper_width",
    *(f"arm_joint_{i}" for i in range(7)),
    "gripper_action",
)


@dataclass(frozen=True)
class SceneLayout:
    """Everything that differs between CALVIN's four tables (spec §2)."""

    name: str
    drawer_x: float  # drawer centre; handle at (drawer_x, -0.25, 0.36) when closed
    opening: tuple[float, float]  # cabinet opening / plank x range
    door_x: float  # door x-centre at q = 0
    door_limit: float  # door joint upper limit; +q moves the door towards -x
    button_xy: tuple[float, float]
    switch_x: float  # the LED is above the button, the bulb above the switch
    table_surface: tuple[float, float]  # block-spawn x range on the desk, y in [-0.15, -0.03]
    slider_left_surface: tuple[float, float]  # x range, y in [0.05, 0.12]
    slider_right_surface: tuple[float, float]
    block_sizes: dict[str, str]  # colour -> small/middle/big
    block_order: tuple[str, str, str]  # scene_obs block-slot order (the scene's YAML order)
    desk_rgb: tuple[int, int, int]  # mean texture colour, used by the builtin assets
    drawer_rgb: tuple[int, int, int]

    @property
    def led_x(self) -> float:
        return self.button_xy[0]

    @property
    def bulb_x(self) -> float:
        return self.switch_x

    @property
    def surfaces(self) -> dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]]:
        """Block-spawn boxes (low corner, high corner) as in ``calvin_scene_X.yaml``."""
        z = BLOCK_REST_Z
        table, left, right = self.table_surface, self.slider_left_surface, self.slider_right_surface
        return {
            "table": ((table[0], -0.15, z), (table[1], -0.03, z)),
            "slider_left": ((left[0], 0.05, z), (left[1], 0.12, z)),
            "slider_right": ((right[0], 0.05, z), (right[1], 0.12, z)),
        }

    def block_size(self, colour: str) -> tuple[float, float, float]:
        return BLOCK_SIZES[self.block_sizes[colour]]


LAYOUTS = {
    "A": SceneLayout(
        name="A",
        drawer_x=0.10,
        opening=(-0.36, 0.16),
        door_x=0.04,
        door_limit=0.28,
        button_xy=(-0.28, -0.12),
        switch_x=0.30,
        table_surface=(-0.20, 0.35),
        slider_left_surface=(-0.32, -0.16),
        slider_right_surface=(-0.05, 0.13),
        block_sizes={"red": "middle", "blue": "big", "pink": "small"},
        block_order=("pink", "blue", "red"),
        desk_rgb=(121, 70, 46),
        drawer_rgb=(135, 98, 82),
    ),
    "B": SceneLayout(
        name="B",
        drawer_x=0.18,
        opening=(-0.18, 0.34),
        door_x=0.228,
        door_limit=0.304,
        button_xy=(0.28, -0.12),
        switch_x=-0.32,
        table_surface=(-0.35, 0.15),
        slider_left_surface=(-0.12, 0.06),
        slider_right_surface=(0.15, 0.33),
        block_sizes={"red": "small", "blue": "big", "pink": "middle"},
        block_order=("red", "blue", "pink"),
        desk_rgb=(244, 196, 140),
        drawer_rgb=(223, 188, 148),
    ),
    "C": SceneLayout(
        name="C",
        drawer_x=0.10,
        opening=(-0.18, 0.34),
        door_x=0.20,
        door_limit=0.24,
        button_xy=(-0.12, -0.12),
        switch_x=-0.32,
        table_surface=(0.00, 0.35),
        slider_left_surface=(-0.12, 0.06),
        slider_right_surface=(0.15, 0.30),
        block_sizes={"red": "big", "blue": "small", "pink": "middle"},
        block_order=("blue", "red", "pink"),
        desk_rgb=(159, 108, 64),
        drawer_rgb=(135, 98, 82),
    ),
    "D": SceneLayout(
        name="D",
        drawer_x=0.18,
        opening=(-0.36, 0.16),
        door_x=0.04,
        door_limit=0.28,
        button_xy=(-0.12, -0.12),
        switch_x=0.30,
        table_surface=(0.00, 0.35),
        slider_left_surface=(-0.32, -0.16),
        slider_right_surface=(-0.05, 0.13),
        block_sizes={"red": "middle", "blue": "small", "pink": "big"},
        block_order=("red", "blue", "pink"),
        desk_rgb=(156, 117, 78),
        drawer_rgb=(161, 133, 105),
    ),
}


def get_layout(scene: str) -> SceneLayout:
    if scene not in LAYOUTS:
        raise ValueError(f"CALVIN scene must be one of {SCENES}, got {scene!r}")
    return LAYOUTS[scene]
