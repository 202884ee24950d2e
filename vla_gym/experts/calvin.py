"""Scripted CALVIN experts: waypoint plans over privileged state, one per task family.

Each plan is built from ``info`` when a subtask starts (``robot_obs``, ``scene_obs``,
``scene``) and followed by steering the controller's accumulated target (``info["tcp_target"]``)
towards the next waypoint with relative actions, so the target never winds up. In chain mode the
expert re-plans whenever ``info["task"]`` changes. All 34 tasks are scripted
(:data:`EXPERT_TASKS`); inside the sliding cabinet and on the raised switch the fingers lean
forward (``SLIDER_TILT``) because a vertical hand does not fit under the cabinet's top board.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_gym.envs.calvin.layout import BLOCK_SIZES, BLOCKS, MAX_REL_ORN, MAX_REL_POS, get_layout
from vla_gym.experts import repeat_to_chunk

OPEN, CLOSE = 1.0, -1.0
FINGER_HALF = 0.02  # half the x-extent of the closed fingers (they line up along the hand y)
TIP_BELOW_TCP = 0.014  # fingertips reach 1.4 cm below the TCP


@dataclass
class Waypoint:
    """Drive the target to ``pos``/``yaw`` (gripper fixed), then hold ``hold`` steps."""

    pos: np.ndarray
    yaw: float | None
    gripper: float
    speed: float = 1.0  # max action units per step
    tol: float = 0.008  # TCP distance that counts as arrived
    hold: int = 0
    max_steps: int = 80
    tilt: float = 0.0  # lean the fingers forward (+y) by this angle (radians)
    keep_orientation: bool = False  # move without turning the hand

    def euler(self, current: np.ndarray) -> np.ndarray:
        """PyBullet euler angles of: fingers down, turned by ``yaw``, leaned forward by ``tilt``
        (or the current target orientation with ``keep_orientation``)."""
        if self.keep_orientation:
            return current
        yaw = current[2] if self.yaw is None else self.yaw
        return fingers_down_euler(yaw, self.tilt)


def fingers_down_euler(yaw: float, tilt: float = 0.0) -> np.ndarray:
    c, s = np.cos(tilt), np.sin(tilt)
    rx_tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    r = rx_tilt @ rz @ np.diag([1.0, -1.0, -1.0])  # Rx(pi): the fingers point down
    pitch = np.arcsin(np.clip(-r[2, 0], -1, 1))
    return np.array([np.arctan2(r[2, 1], r[2, 2]), pitch, np.arctan2(r[1, 0], r[0, 0])])


@dataclass
class SceneView:
    """The parts of the privileged state a plan needs."""

    layout: Any
    tcp: np.ndarray
    tcp_euler: np.ndarray
    door: float
    drawer: float
    switch: float
    blocks: dict[str, tuple[np.ndarray, float]]  # colour -> (position, yaw)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> SceneView:
        layout = get_layout(str(info["scene"]))
        robot, scene = np.asarray(info["robot_obs"]), np.asarray(info["scene_obs"])
        blocks = {}
        for slot, colour in enumerate(layout.block_order):
            pose = scene[6 + 6 * slot : 12 + 6 * slot]
            blocks[colour] = (pose[:3].copy(), float(pose[5]))
            door, drawer, switch = float(scene[0]), float(scene[1]), float(scene[3])
        return cls(layout, robot[:3], robot[3:6], door, drawer, switch, blocks)

    def half_x(self, colour: str) -> float:
        """Half the block's footprint along world x at its current yaw."""
        sx, sy, _ = BLOCK_SIZES[self.layout.block_sizes[colour]]
        yaw = self.blocks[colour][1]
        return 0.5 * (abs(np.cos(yaw)) * sx + abs(np.sin(yaw)) * sy)


def grasp_yaw(block_yaw: float, current_yaw: float) -> float:
    """TCP yaw putting the finger axis along the block's short (y) side, nearest the current."""
    candidates = block_yaw + np.pi * np.arange(-3, 4)
    return float(candidates[np.argmin(np.abs(candidates - current_yaw))])


# ------------------------------------------------------------------------------- plans
def _up(pos, dz: float) -> np.ndarray:
    return np.asarray(pos, dtype=np.float64) + [0.0, 0.0, dz]


def plan_lift(view: SceneView, colour: str, lift: float = 0.12) -> list[Waypoint]:
    pos, yaw = view.blocks[colour]
    tcp_yaw = grasp_yaw(yaw, view.tcp_euler[2])
    grasp = _up(pos, 0.004)
    return [
        Waypoint(_up(pos, 0.10), tcp_yaw, OPEN, tol=0.01),
        Waypoint(grasp, tcp_yaw, OPEN, speed=0.5, tol=0.006),
        Waypoint(grasp, tcp_yaw, CLOSE, hold=8),
        Waypoint(_up(pos, lift), tcp_yaw, CLOSE, speed=0.6, hold=200),
    ]


def plan_rotate(view: SceneView, colour: str, direction: float) -> list[Waypoint]:
    pos, yaw = view.blocks[colour]
    tcp_yaw = grasp_yaw(yaw, view.tcp_euler[2])
    # Turn the way that keeps joint 7 near its middle: +yaw is counter-clockwise ("left").
    turned = tcp_yaw + direction * np.radians(80)
    grasp = _up(pos, 0.004)
    return [
        Waypoint(_up(pos, 0.10), tcp_yaw, OPEN, tol=0.01),
        Waypoint(grasp, tcp_yaw, OPEN, speed=0.5, tol=0.006),
        Waypoint(grasp, tcp_yaw, CLOSE, hold=8),
        Waypoint(_up(pos, 0.02), tcp_yaw, CLOSE, speed=0.5),
        Waypoint(_up(pos, 0.02), turned, CLOSE, speed=0.6, tol=0.01),
        Waypoint(_up(pos, -0.002), turned, CLOSE, speed=0.3, hold=10),
        Waypoint(_up(pos, -0.002), turned, OPEN, hold=10),
        Waypoint(_up(pos, 0.10), turned, OPEN, hold=200),
    ]


def plan_push(view: SceneView, colour: str, direction: float) -> list[Waypoint]:
    pos, _ = view.blocks[colour]
    behind = pos[0] - direction * (view.half_x(colour) + FINGER_HALF + 0.015)
    start = np.array([behind, pos[1], 0.47])
    end = start + [direction * 0.14, 0.0, 0.0]
    yaw = view.tcp_euler[2]
    return [
        Waypoint(_up(start, 0.08), yaw, CLOSE, tol=0.01),
        Waypoint(start, yaw, CLOSE, speed=0.5, tol=0.006),
        Waypoint(end, yaw, CLOSE, speed=0.4, tol=0.01),
        Waypoint(_up(end, 0.08), yaw, CLOSE, hold=200),
    ]


def plan_drawer(view: SceneView, opening: bool) -> list[Waypoint]:
    x = view.layout.drawer_x
    bar_y = -0.25 - view.drawer  # the handle's grip bar (y centre) at the current opening
    yaw = view.tcp_euler[2]
    if opening:  # hook the closed fingers between the bar and the drawer front, pull out
        hook = np.array([x, bar_y + 0.04, 0.36])
        end = hook + [0.0, -0.21, 0.0]
    else:  # push the bar from the front
        hook = np.array([x, bar_y - 0.04, 0.36])
        end = np.array([x, -0.25 - 0.04 + 0.01, 0.36])
    return [
        Waypoint(_up(hook, 0.08), yaw, CLOSE, tol=0.01),
        Waypoint(hook, yaw, CLOSE, speed=0.5, tol=0.006),
        Waypoint(end, yaw, CLOSE, speed=0.5, tol=0.01),
        Waypoint(_up(end, 0.10), yaw, CLOSE, hold=200),
    ]


def plan_slider(view: SceneView, to_left: bool, to_the_end: bool = False) -> list[Waypoint]:
    """Push the door's grip bar sideways by 0.19 m, or as far as it goes (``to_the_end``)."""
    bar_x = view.layout.door_x - view.door  # the door's grip bar
    side = 1.0 if to_left else -1.0  # push from the right to move it left
    start = np.array([bar_x + side * (0.02 + FINGER_HALF + 0.012), -0.025, 0.53])
    travel = 0.19
    if to_the_end:
        travel = (view.layout.door_limit - view.door if to_left else view.door) + 0.01
    end = start + [-side * travel, 0.0, 0.0]
    yaw = view.tcp_euler[2]
    return [
        Waypoint(_up(start, 0.09), yaw, CLOSE, tol=0.01),
        Waypoint(start, yaw, CLOSE, speed=0.5, tol=0.006),
        Waypoint(end, yaw, CLOSE, speed=0.5, tol=0.01, max_steps=40),
        Waypoint(_up(end, 0.10), yaw, CLOSE, hold=0 if to_the_end else 200),
    ]


def uncover(view: SceneView, x: float) -> list[Waypoint]:
    """Slide the door fully away first if it still hides ``x`` (a chain may leave it half-way)."""
    left_edge = view.layout.door_x - view.door - 0.14
    if left_edge - 0.05 < x < left_edge + 0.28 + 0.05:
        block_on_left = x < left_edge + 0.14
        return plan_slider(view, to_left=not block_on_left, to_the_end=True)
    return []


def plan_button(view: SceneView) -> list[Waypoint]:
    bx, by = view.layout.button_xy
    yaw = view.tcp_euler[2]
    above = np.array([bx, by, 0.56])
    press = np.array([bx, by, 0.462 + TIP_BELOW_TCP])
    return [
        Waypoint(above, yaw, CLOSE, tol=0.01),
        Waypoint(press, yaw, CLOSE, speed=0.4, tol=0.004, hold=4, max_steps=40),
        Waypoint(above, yaw, CLOSE, hold=200),
    ]


def held_block(view: SceneView) -> str | None:
    """The block between the fingers (its centre within 3 cm of the TCP), if any."""
    for colour, (pos, _) in view.blocks.items():
        if np.linalg.norm(pos - view.tcp) < 0.03:
            return colour
    return None


def _release(view: SceneView, place: np.ndarray, yaw: float) -> list[Waypoint]:
    """Carry the held block high above ``place`` (clear of the door's grip), lower it there,
    open and back off upwards."""
    above = np.array([place[0], place[1], max(place[2] + 0.10, CARRY_HEIGHT)])
    return [
        Waypoint(above, yaw, CLOSE, tol=0.015),
        Waypoint(_up(place, 0.10), yaw, CLOSE, tol=0.01),
        Waypoint(place, yaw, CLOSE, speed=0.4, tol=0.006),
        Waypoint(place, yaw, OPEN, hold=10),
        Waypoint(_up(place, 0.12), yaw, OPEN, hold=200),
    ]


SLIDER_TILT = np.radians(40)  # lean into the cabinet: the top board is too low for a vertical hand


def _into_cabinet(target: np.ndarray) -> np.ndarray:
    """Where to start the straight-line reach towards ``target`` inside the cabinet."""
    approach = np.array([0.0, np.sin(SLIDER_TILT), -np.cos(SLIDER_TILT)])
    return target - 0.10 * approach


def plan_lift_slider(view: SceneView, colour: str) -> list[Waypoint]:
    pos, yaw = view.blocks[colour]
    tcp_yaw = grasp_yaw(yaw, view.tcp_euler[2])
    pre, grasp, tilt = _into_cabinet(pos), _up(pos, 0.004), SLIDER_TILT
    return uncover(view, pos[0]) + [
        Waypoint(pre + [0.0, -0.08, 0.06], tcp_yaw, OPEN, tol=0.015, tilt=tilt),
        Waypoint(pre, tcp_yaw, OPEN, speed=0.5, tol=0.008, tilt=tilt),
        Waypoint(grasp, tcp_yaw, OPEN, speed=0.4, tol=0.006, tilt=tilt),
        Waypoint(grasp, tcp_yaw, CLOSE, hold=8, tilt=tilt),
        Waypoint(_up(pos, 0.06), tcp_yaw, CLOSE, speed=0.4, hold=200, tilt=tilt),
    ]


def plan_place_in_slider(view: SceneView) -> list[Waypoint]:
    """Put the held block into the compartment the door leaves open."""
    layout = view.layout
    door_left_edge = layout.door_x - view.door - 0.14
    lo, hi = layout.opening
    # The door covers [left edge, left edge + 0.28]; use the wider free side.
    free = (
        (lo, door_left_edge)
        if door_left_edge - lo > hi - (door_left_edge + 0.28)
        else (door_left_edge + 0.28, hi)
    )
    place = np.array([(free[0] + free[1]) / 2, 0.09, 0.468])
    yaw, tilt = view.tcp_euler[2], SLIDER_TILT
    pre = _into_cabinet(place)
    return [
        Waypoint(pre + [0.0, -0.08, 0.06], yaw, CLOSE, tol=0.015, tilt=tilt),
        Waypoint(pre, yaw, CLOSE, speed=0.5, tol=0.008, tilt=tilt),
        Waypoint(place, yaw, CLOSE, speed=0.4, tol=0.008, tilt=tilt),
        Waypoint(place, yaw, OPEN, hold=10, tilt=tilt),
        Waypoint(pre + [0.0, -0.08, 0.06], yaw, OPEN, speed=0.5, hold=200, tilt=tilt),
    ]


def plan_place_in_drawer(view: SceneView) -> list[Waypoint]:
    layout = view.layout
    place = np.array([layout.drawer_x, -0.25 - view.drawer + 0.0, 0.385])
    return _release(view, place, view.tcp_euler[2])


def plan_stack(view: SceneView) -> list[Waypoint]:
    held = held_block(view)
    others = [c for c in BLOCKS if c != held and view.blocks[c][0][2] < 0.48]
    on_table = [c for c in others if view.blocks[c][0][1] < 0.0] or others
    if not on_table:
        return []
    base, base_yaw = view.blocks[on_table[0]]
    yaw = grasp_yaw(base_yaw, view.tcp_euler[2])
    return _release(view, _up(base, 0.045), yaw)


def plan_unstack(view: SceneView) -> list[Waypoint]:
    top = max(BLOCKS, key=lambda c: view.blocks[c][0][2])
    return plan_lift(view, top, lift=0.08)


def plan_push_into_drawer(view: SceneView) -> list[Waypoint]:
    """Push a table block towards the robot, off the desk edge into the open drawer."""
    x_lo, x_hi = view.layout.drawer_x - 0.16, view.layout.drawer_x + 0.16
    candidates = [
        c
        for c in BLOCKS
        if view.blocks[c][0][1] < 0.0
        and view.blocks[c][0][2] < 0.48
        and x_lo < view.blocks[c][0][0] < x_hi
    ]
    if not candidates:
        return []
    pos, yaw = view.blocks[candidates[0]]
    sx, sy, _ = BLOCK_SIZES[view.layout.block_sizes[candidates[0]]]
    half_y = 0.5 * (abs(np.sin(yaw)) * sx + abs(np.cos(yaw)) * sy)
    tcp_yaw = (
        float(np.pi / 2 + np.round((view.tcp_euler[2] - np.pi / 2) / np.pi) * np.pi) - np.pi / 2
    )
    start = np.array([pos[0], pos[1] + half_y + 0.0105 + 0.015, 0.47])
    end = np.array([pos[0], -0.27, 0.47])
    return [
        Waypoint(_up(start, 0.08), tcp_yaw, CLOSE, tol=0.01),
        Waypoint(start, tcp_yaw, CLOSE, speed=0.5, tol=0.006),
        Waypoint(end, tcp_yaw, CLOSE, speed=0.5, tol=0.01),
        Waypoint(_up(end, 0.12), tcp_yaw, CLOSE, hold=200),
    ]


def plan_switch_up(view: SceneView) -> list[Waypoint]:
    """Turn the bulb on: fingertips against the switch handle's front, push up along its rail."""
    # Push near the handle's end closest to the robot: the far end is at the arm's reach limit.
    x = view.layout.switch_x + (-0.04 if view.layout.switch_x > 0 else 0.04)
    rail = np.array([0.0, 0.5, 0.866])
    yaw = view.tcp_euler[2]
    contact = np.array([x, -0.02, 0.515])  # closed fingers just in front of the handle
    end = contact + 0.11 * rail + [0.0, 0.01, 0.0]
    return [
        Waypoint(contact + [0.0, -0.05, 0.0], yaw, CLOSE, tol=0.01),
        Waypoint(contact, yaw, CLOSE, speed=0.4, tol=0.006),
        Waypoint(end, yaw, CLOSE, speed=0.3, tol=0.01),
        Waypoint(end + [0.0, -0.08, 0.0], yaw, CLOSE, hold=200),
    ]


def plan_switch_down(view: SceneView) -> list[Waypoint]:
    """Turn the bulb off: fingertips on top of the raised handle (leaning forward to reach it),
    push down along the rail."""
    x = view.layout.switch_x + (-0.04 if view.layout.switch_x > 0 else 0.04)
    rail = np.array([0.0, 0.5, 0.866])
    yaw, tilt = view.tcp_euler[2], SLIDER_TILT
    top = np.array([x, 0.037, 0.534]) + view.switch * rail  # the handle's top centre
    contact = top + [0.0, -0.01, 0.012]
    end = contact - 0.11 * rail
    return [
        Waypoint(contact + [0.0, -0.06, 0.06], yaw, CLOSE, tol=0.015, tilt=tilt),
        Waypoint(contact, yaw, CLOSE, speed=0.4, tol=0.008, tilt=tilt),
        Waypoint(end, yaw, CLOSE, speed=0.3, tol=0.01, tilt=tilt),
        Waypoint(end + [0.0, -0.06, 0.04], yaw, CLOSE, hold=200, tilt=tilt),
    ]


CARRY_HEIGHT = 0.64  # TCP height for moving between places: a held block clears everything


def retreat(info: dict[str, Any]) -> list[Waypoint]:
    """Back out of the cabinet, then rise, without turning the hand or changing the grip."""
    tcp, gripper = np.asarray(info["robot_obs"])[:3], float(np.asarray(info["robot_obs"])[14])
    steps = []
    if tcp[1] > -0.03:
        tcp = np.array([tcp[0], -0.07, tcp[2] + 0.01])
        steps.append(
            Waypoint(tcp, None, gripper, speed=0.6, tol=0.015, max_steps=30, keep_orientation=True)
        )
    if tcp[2] < CARRY_HEIGHT - 0.02:
        up = np.array([tcp[0], tcp[1], CARRY_HEIGHT])
        steps.append(
            Waypoint(up, None, gripper, speed=0.6, tol=0.015, max_steps=30, keep_orientation=True)
        )
    return steps


PLANNERS: dict[str, Callable[[SceneView], list[Waypoint]]] = {}
for _c in BLOCKS:
    PLANNERS[f"lift_{_c}_block_table"] = lambda v, c=_c: plan_lift(v, c)
    PLANNERS[f"rotate_{_c}_block_right"] = lambda v, c=_c: plan_rotate(v, c, -1.0)
    PLANNERS[f"rotate_{_c}_block_left"] = lambda v, c=_c: plan_rotate(v, c, 1.0)
    PLANNERS[f"push_{_c}_block_right"] = lambda v, c=_c: plan_push(v, c, 1.0)
    PLANNERS[f"push_{_c}_block_left"] = lambda v, c=_c: plan_push(v, c, -1.0)
    PLANNERS[f"lift_{_c}_block_drawer"] = lambda v, c=_c: plan_lift(v, c)
    PLANNERS[f"lift_{_c}_block_slider"] = lambda v, c=_c: plan_lift_slider(v, c)
PLANNERS["place_in_drawer"] = plan_place_in_drawer
PLANNERS["place_in_slider"] = plan_place_in_slider
PLANNERS["stack_block"] = plan_stack
PLANNERS["unstack_block"] = plan_unstack
PLANNERS["push_into_drawer"] = plan_push_into_drawer
PLANNERS["open_drawer"] = lambda v: plan_drawer(v, True)
PLANNERS["close_drawer"] = lambda v: plan_drawer(v, False)
PLANNERS["move_slider_left"] = lambda v: plan_slider(v, True)
PLANNERS["move_slider_right"] = lambda v: plan_slider(v, False)
PLANNERS["turn_on_led"] = plan_button
PLANNERS["turn_on_lightbulb"] = plan_switch_up
PLANNERS["turn_off_lightbulb"] = plan_switch_down
PLANNERS["turn_off_led"] = plan_button
EXPERT_TASKS = tuple(PLANNERS)


# ------------------------------------------------------------------------------ expert
class CalvinExpert:
    """Follows the plan of the env's current task (or of ``task``, when given)."""

    def __init__(self, task: str | None = None, action_chunk: int = 1) -> None:
        if task is not None and task not in PLANNERS:
            raise ValueError(
                f"no CALVIN expert for task {task!r}; experts exist for: {', '.join(EXPERT_TASKS)}"
            )
        self.task = task
        self.action_chunk = action_chunk
        self.reset()

    def reset(self) -> None:
        self._plan: list[Waypoint] = []
        self._key: tuple | None = None
        self._index = 0
        self._steps = 0
        self._held = 0

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        task = self.task or str(info["task"])
        key = (task, int(info.get("subtasks_solved", 0)))
        if int(info.get("elapsed_steps", 1)) == 0 or key != self._key:
            self.reset()
            self._key = key
            planner = PLANNERS.get(task)
            self._plan = planner(SceneView.from_info(info)) if planner is not None else []
            if self._plan and key[1] > 0:  # mid-chain: first get clear of the last subtask
                self._plan = retreat(info) + self._plan
        if not self._plan:  # unsupported task: stay put with the gripper as it is
            hold = np.zeros(7, np.float32)
            hold[6] = np.asarray(info["robot_obs"])[14]
            return repeat_to_chunk(hold, self.action_chunk)
        return repeat_to_chunk(self._follow(info), self.action_chunk)

    def _follow(self, info: dict[str, Any]) -> np.ndarray:
        waypoint = self._plan[self._index]
        target = np.asarray(info["tcp_target"], dtype=np.float64)
        tcp = np.asarray(info["robot_obs"], dtype=np.float64)[:3]
        goal_euler = waypoint.euler(target[3:])
        # Steer the accumulated target; euler errors are wrapped to the nearest turn.
        d_pos = (waypoint.pos - target[:3]) / MAX_REL_POS
        d_orn = np.angle(np.exp(1j * (goal_euler - target[3:]))) / MAX_REL_ORN
        d_pos = np.clip(d_pos, -waypoint.speed, waypoint.speed)
        d_orn = np.clip(d_orn, -1.0, 1.0)
        arrived = np.linalg.norm(waypoint.pos - tcp) < waypoint.tol and np.all(np.abs(d_orn) < 0.2)
        self._steps += 1
        if arrived or self._steps > waypoint.max_steps:
            self._held += 1
            if self._held > waypoint.hold and self._index < len(self._plan) - 1:
                self._index += 1
                self._steps = self._held = 0
        return np.array([*d_pos, *d_orn, waypoint.gripper], dtype=np.float32)


def make_expert(
    env_id: str, task: str | None = None, action_chunk: int = 1, **kwargs: Any
) -> CalvinExpert:
    """``make_expert("VLA/CALVIN-D-v0", task="open_drawer")``; without ``task`` the expert
    follows the env's current subtask (chain mode)."""
    if kwargs:
        raise TypeError(f"unexpected CALVIN expert arguments: {sorted(kwargs)}")
    return CalvinExpert(task=task, action_chunk=action_chunk)
