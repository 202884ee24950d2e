"""The 34 CALVIN task oracles (spec §5; ``conf/tasks/new_playtable_tasks.yaml``).

A task is a change between two :class:`SceneSnapshot`s: ``start`` (the start of the subtask)
and ``end`` (now). Contacts are ``(body, link)`` pairs with bodies ``robot``, ``table``,
``plane``, ``block_<colour>``; table links are ``base_link``, ``plank_link``, ``drawer_link``...
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from vla_gym.envs.calvin.layout import BLOCKS
from vla_gym.envs.calvin.scene import SceneSnapshot

Oracle = Callable[[SceneSnapshot, SceneSnapshot], bool]

BLOCK_BODIES = frozenset(f"block_{c}" for c in BLOCKS)
# The oracles' thresholds, shared by the graded progress below.
TURN_DEGREES, PUSH_METRES, SLIDER_METRES, DRAWER_METRES = 60, 0.1, 0.15, 0.12
LIFT_METRES = {"table": 0.05, "slider": 0.03, "drawer": 0.05}
LIFT_LINKS = {"table": "base_link", "slider": "plank_link", "drawer": "drawer_link"}


def _bodies(contacts) -> set[str]:
    return {body for body, _ in contacts}


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def relative_rotation_xyz_degrees(start_quat: np.ndarray, end_quat: np.ndarray) -> np.ndarray:
    """Euler angles of ``R_end * R_start^-1`` as scipy's extrinsic ``"xyz"``, in degrees."""
    m = _quat_to_matrix(end_quat) @ _quat_to_matrix(start_quat).T
    # extrinsic xyz == R = Rz(c) Ry(b) Rx(a)
    b = np.arcsin(np.clip(-m[2, 0], -1.0, 1.0))
    if abs(m[2, 0]) < 1 - 1e-9:
        a, c = np.arctan2(m[2, 1], m[2, 2]), np.arctan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: scipy sets the third angle to zero
        a, c = np.arctan2(-m[1, 2], m[1, 1]), 0.0
    return np.degrees([a, b, c])


def rotate_object(colour: str, z_degrees: float, start: SceneSnapshot, end: SceneSnapshot) -> bool:
    s, e = start.blocks[colour], end.blocks[colour]
    x, y, z = relative_rotation_xyz_degrees(s.orn, e.orn)
    if np.linalg.norm(e.pos - s.pos) > 0.1:
        return False
    if not (_bodies(e.contacts) - {"robot"}):
        return False
    tilt_ok = abs(x) < 30 and abs(y) < 30
    if z_degrees > 0:
        return z_degrees < z < 180 and tilt_ok
    return z_degrees > z > -180 and tilt_ok


def push_object(colour: str, dx: float, start: SceneSnapshot, end: SceneSnapshot) -> bool:
    s, e = start.blocks[colour], end.blocks[colour]
    start_contacts = {c for c in s.contacts if c[0] != "robot"}
    end_contacts = {c for c in e.contacts if c[0] != "robot"}
    if not (start_contacts and end_contacts and start_contacts <= end_contacts):
        return False
    moved = e.pos[0] - s.pos[0]
    return moved > dx if dx > 0 else moved < dx


def lift_object(
    colour: str, dz: float, link: str, start: SceneSnapshot, end: SceneSnapshot
) -> bool:
    s, e = start.blocks[colour], end.blocks[colour]
    return bool(
        e.pos[2] - s.pos[2] > dz
        and _bodies(e.contacts) == {"robot"}
        and ("table", link) in s.contacts
    )


def place_object(link: str, start: SceneSnapshot, end: SceneSnapshot) -> bool:
    held = _bodies(start.robot_contacts)
    if len(held) != 1:
        return False
    body = next(iter(held))
    if body in _bodies(end.robot_contacts) or body not in BLOCK_BODIES:
        return False
    colour = body.removeprefix("block_")
    return (
        _bodies(start.blocks[colour].contacts) == {"robot"}
        and ("table", link) in end.blocks[colour].contacts
    )


def push_into_drawer(start: SceneSnapshot, end: SceneSnapshot) -> bool:
    for colour in BLOCKS:
        s, e = start.blocks[colour].contacts, end.blocks[colour].contacts
        if "robot" in _bodies(s) | _bodies(e):
            continue
        if len(s) == 1 and ("table", "base_link") in s and ("table", "drawer_link") in e:
            return True
    return False


def _slow(block) -> bool:
    return bool(np.all(np.abs(block.lin_vel) < 1) and np.all(np.abs(block.ang_vel) < 1))


def stack_blocks(start: SceneSnapshot, end: SceneSnapshot) -> bool:
    for colour in BLOCKS:
        s, e = _bodies(start.blocks[colour].contacts), _bodies(end.blocks[colour].contacts)
        landed = not (s & BLOCK_BODIES) and (e & BLOCK_BODIES) and not (e - BLOCK_BODIES)
        if landed and _slow(end.blocks[colour]):
            return True
    return False


def unstack_blocks(start: SceneSnapshot, end: SceneSnapshot) -> bool:
    for colour in BLOCKS:
        s, e = _bodies(start.blocks[colour].contacts), _bodies(end.blocks[colour].contacts)
        was_on_block = (s & BLOCK_BODIES) and not (s - BLOCK_BODIES)
        if was_on_block and not (e & BLOCK_BODIES) and _slow(start.blocks[colour]):
            return True
    return False


def move_joint(joint: str, threshold: float, start: SceneSnapshot, end: SceneSnapshot) -> bool:
    delta = getattr(end, joint) - getattr(start, joint)
    return delta > threshold if threshold > 0 else delta < threshold


def toggle_light(
    light: str, before: int, after: int, start: SceneSnapshot, end: SceneSnapshot
) -> bool:
    return getattr(start, light) == before and getattr(end, light) == after


def _build_oracles() -> dict[str, Oracle]:
    """In the official ``task_names`` order (spec §6.2), which the chain generator relies on."""
    oracles: dict[str, Oracle] = {}
    for colour in BLOCKS:
        oracles[f"rotate_{colour}_block_right"] = partial(rotate_object, colour, -TURN_DEGREES)
        oracles[f"rotate_{colour}_block_left"] = partial(rotate_object, colour, TURN_DEGREES)
    for colour in BLOCKS:
        oracles[f"push_{colour}_block_right"] = partial(push_object, colour, PUSH_METRES)
        oracles[f"push_{colour}_block_left"] = partial(push_object, colour, -PUSH_METRES)
    oracles["move_slider_left"] = partial(move_joint, "door", SLIDER_METRES)
    oracles["move_slider_right"] = partial(move_joint, "door", -SLIDER_METRES)
    oracles["open_drawer"] = partial(move_joint, "drawer", DRAWER_METRES)
    oracles["close_drawer"] = partial(move_joint, "drawer", -DRAWER_METRES)
    for colour in BLOCKS:
        for surface, dz in LIFT_METRES.items():
            oracles[f"lift_{colour}_block_{surface}"] = partial(
                lift_object, colour, dz, LIFT_LINKS[surface]
            )
    oracles["place_in_slider"] = partial(place_object, "plank_link")
    oracles["place_in_drawer"] = partial(place_object, "drawer_link")
    oracles["stack_block"] = stack_blocks
    oracles["unstack_block"] = unstack_blocks
    oracles["turn_on_lightbulb"] = partial(toggle_light, "lightbulb", 0, 1)
    oracles["turn_off_lightbulb"] = partial(toggle_light, "lightbulb", 1, 0)
    oracles["turn_on_led"] = partial(toggle_light, "led", 0, 1)
    oracles["turn_off_led"] = partial(toggle_light, "led", 1, 0)
    oracles["push_into_drawer"] = push_into_drawer
    return oracles


ORACLES: dict[str, Oracle] = _build_oracles()
TASK_NAMES: tuple[str, ...] = tuple(ORACLES)


def _check_name(task: str) -> None:
    if task not in ORACLES:
        raise ValueError(f"unknown CALVIN task {task!r}; tasks: {', '.join(TASK_NAMES)}")


def check_task(task: str, start: SceneSnapshot, end: SceneSnapshot) -> bool:
    """Whether ``task`` was achieved between ``start`` and ``end``."""
    _check_name(task)
    return bool(ORACLES[task](start, end))


# Graded progress: how far a task's oracle quantity has moved towards its threshold, in [0, 1].
# Only the quantity is graded; the oracle's other conditions (contacts, tilt) are not.


def _fraction(moved: float, threshold: float) -> float:
    return float(np.clip(moved / threshold, 0.0, 1.0))


def rotation_progress(colour: str, z_degrees: float, start: SceneSnapshot, end: SceneSnapshot):
    z = relative_rotation_xyz_degrees(start.blocks[colour].orn, end.blocks[colour].orn)[2]
    return _fraction(z, z_degrees)


def push_progress(colour: str, dx: float, start: SceneSnapshot, end: SceneSnapshot) -> float:
    return _fraction(end.blocks[colour].pos[0] - start.blocks[colour].pos[0], dx)


def lift_progress(colour: str, dz: float, start: SceneSnapshot, end: SceneSnapshot) -> float:
    return _fraction(end.blocks[colour].pos[2] - start.blocks[colour].pos[2], dz)


def joint_progress(joint: str, threshold: float, start: SceneSnapshot, end: SceneSnapshot):
    return _fraction(getattr(end, joint) - getattr(start, joint), threshold)


def _build_progress() -> dict[str, Oracle]:
    """The graded tasks: rotations, pushes and lifts of a block, the slider and the drawer."""
    progress: dict[str, Oracle] = {}
    for colour in BLOCKS:
        progress[f"rotate_{colour}_block_right"] = partial(rotation_progress, colour, -TURN_DEGREES)
        progress[f"rotate_{colour}_block_left"] = partial(rotation_progress, colour, TURN_DEGREES)
        progress[f"push_{colour}_block_right"] = partial(push_progress, colour, PUSH_METRES)
        progress[f"push_{colour}_block_left"] = partial(push_progress, colour, -PUSH_METRES)
        for surface, dz in LIFT_METRES.items():
            progress[f"lift_{colour}_block_{surface}"] = partial(lift_progress, colour, dz)
    progress["move_slider_left"] = partial(joint_progress, "door", SLIDER_METRES)
    progress["move_slider_right"] = partial(joint_progress, "door", -SLIDER_METRES)
    progress["open_drawer"] = partial(joint_progress, "drawer", DRAWER_METRES)
    progress["close_drawer"] = partial(joint_progress, "drawer", -DRAWER_METRES)
    return progress


PROGRESS: dict[str, Oracle] = _build_progress()


def task_progress(task: str, start: SceneSnapshot, end: SceneSnapshot) -> float:
    """How far ``task``'s oracle quantity (a block's turn, shift or rise, the slider's or the
    drawer's travel) has moved from ``start`` to ``end`` towards its threshold, in [0, 1];
    0 for the tasks without one (lights, placing, stacking, pushing into the drawer)."""
    _check_name(task)
    grade = PROGRESS.get(task)
    return grade(start, end) if grade is not None else 0.0


def task_block(task: str) -> str | None:
    """The block a rotate/push/lift task names (``"red"``), else None."""
    parts = task.split("_")
    named = parts[0] in ("rotate", "push", "lift") and len(parts) == 4 and parts[2] == "block"
    return parts[1] if named and parts[1] in BLOCKS else None


def achieved_tasks(start: SceneSnapshot, end: SceneSnapshot) -> list[str]:
    return [name for name, oracle in ORACLES.items() if oracle(start, end)]
