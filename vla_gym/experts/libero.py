"""Scripted LIBERO experts: pick-and-place on the goal's privileged poses, through OSC actions.

The env reports the task's BDDL goal and the live poses and boxes of its arguments
(:mod:`vla_gym.envs.libero.privileged`). Goals ``(In OBJ REGION)`` and ``(On OBJ TARGET)`` —
every task of LIBERO-Object and LIBERO-Spatial — are served by one closed-loop skill:
hover over the object, descend, close, lift, carry the object's origin over the target's, lower,
open. An object narrow enough for the fingers (8 cm) is held across its narrower side; a wider
one (a bowl) by its wall, from a side where the env's ``goal_clearance`` leaves the outer finger
room to go down (a bowl in a drawer is taken along the drawer, not against its walls). Targets
are recomputed every step from the live poses, so a slipping or nudged object is followed; the
descent waits for the object to be at rest. A descent blocked above the grasp point, an
approach stuck on something or a grasp that did not lift the object is retried (a rim grasp
from another free side, as far from the tried ones as possible).

Actions are LIBERO's OSC_POSE deltas: position error over the controller's 0.05 m per unit,
rotation error (axis-angle) over its 0.5 rad per unit, both clipped to [-1, 1]. The hand points
its fingers down throughout and only turns about the vertical (yaw).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_gym.experts import repeat_to_chunk

OPEN, CLOSE = -1.0, 1.0
POS_SCALE, ROT_SCALE = 0.05, 0.5  # metres / radians per action unit (LIBERO's OSC_POSE)
# The hand at yaw 0: fingers down, closing along its x axis = world y.
FINGERS_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
PAD_BELOW_TCP = 0.006  # the finger pads' lower edge sits this far below the TCP
MAX_GRASP_WIDTH = 0.07  # wider objects (bowls) are held by their rim (the fingers open 8 cm)
RIM_INSET = 0.006  # from a wide object's outer edge to the middle of its wall
# A descent that stops this far above the grasp point is blocked (on a rim grasp, the outer
# finger rests on whatever stands close to the wall, e.g. a drawer's side).
BLOCKED_ABOVE, BLOCKED_ABOVE_RIM = 0.015, 0.007
FINGER_ROOM = 0.005  # a rim side is free when nothing beside it rises above pads - this
SUPPORTED_GOALS = ("in", "on")
INFO_KEYS = ("goal", "goal_poses", "goal_boxes", "goal_clearance", "tcp_pos", "tcp_quat")


def yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ FINGERS_DOWN


def hand_yaw(rotation: np.ndarray) -> float:
    """The yaw of a hand orientation (its turn about the vertical from ``FINGERS_DOWN``)."""
    turn = rotation @ FINGERS_DOWN.T
    return float(np.arctan2(turn[1, 0], turn[0, 0]))


@dataclass
class Body:
    """One goal argument: its pose and the box around its geometry in that pose's frame."""

    pos: np.ndarray
    rot: np.ndarray
    box: np.ndarray  # (min xyz, max xyz) in the frame (pos, rot)

    @classmethod
    def from_info(cls, info: dict[str, Any], index: int) -> Body:
        pose = np.asarray(info["goal_poses"], np.float64)[index]
        box = np.asarray(info["goal_boxes"], np.float64)[index]
        return cls(pose[:3], Rotation.from_quat(pose[3:]).as_matrix(), box)

    def corners(self) -> np.ndarray:
        low, high = self.box[:3], self.box[3:]
        local = np.array(
            [
                [x, y, z]
                for x in (low[0], high[0])
                for y in (low[1], high[1])
                for z in (low[2], high[2])
            ]
        )
        return local @ self.rot.T + self.pos

    @property
    def centre(self) -> np.ndarray:
        return self.rot @ (0.5 * (self.box[:3] + self.box[3:])) + self.pos

    @property
    def bottom(self) -> float:
        return float(self.corners()[:, 2].min())

    @property
    def top(self) -> float:
        return float(self.corners()[:, 2].max())

    def grasp_yaw(self, current: float) -> float:
        """Hand yaw closing the fingers across the object's narrower horizontal side."""
        extents = self.box[3:] - self.box[:3]
        horizontal = [k for k in range(3) if abs(self.rot[2, k]) < 0.7]
        if len(horizontal) < 2:  # a tilted object: keep the hand as it is
            return current
        axis = min(horizontal, key=lambda k: extents[k])
        direction = self.rot[:, axis]
        yaw = np.arctan2(direction[1], direction[0]) - np.pi / 2  # yaw 0 closes along y
        return _nearest_turn(yaw, current)

    def narrow_width(self) -> float:
        """The object's smaller horizontal extent (along its own axes)."""
        extents = self.box[3:] - self.box[:3]
        horizontal = [extents[k] for k in range(3) if abs(self.rot[2, k]) < 0.7]
        return float(min(horizontal)) if horizontal else float(min(extents))


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _nearest_turn(yaw: float, current: float) -> float:
    """``yaw`` or a half turn from it, whichever is nearest ``current`` (the hand is symmetric)."""
    candidates = yaw + np.pi * np.arange(-2, 3)
    return float(candidates[np.argmin(np.abs(candidates - current))])


def rim_order(clearance: np.ndarray, lowest_pad: float, facing: float) -> list[float]:
    """Directions (angles from world x) to take a rim from, one per try.

    ``clearance[k]`` is the height of whatever stands beside the object at angle
    ``2 pi k / len(clearance)``; a side is free when that is below ``lowest_pad`` (where the
    outer finger's pads go down to). The free side nearest ``facing`` (the side facing the
    hand) comes first, then each next free side as far as possible from those already in the
    list; sides that are not free follow, the lowest first.
    """
    angles = 2 * np.pi * np.arange(len(clearance)) / len(clearance)
    free = [float(a) for a in angles[clearance < lowest_pad]]
    order: list[float] = []
    while free:
        if order:
            side = max(free, key=lambda a: min(abs(_wrap(a - b)) for b in order))
        else:
            side = min(free, key=lambda a: abs(_wrap(a - facing)))
        order.append(side)
        free.remove(side)
    blocked = np.argsort(clearance, kind="stable")
    return order + [float(angles[k]) for k in blocked if clearance[k] >= lowest_pad]


class PickPlace:
    """Pick the goal's first argument, put it in/on the second.

    ``inside`` (an ``In`` goal) lowers the object into the container down to near its floor;
    otherwise (``On``) the object is set down on the target's top.
    """

    def __init__(
        self, inside: bool, hover: float = 0.08, clearance: float = 0.05, safe_height: float = 0.1
    ) -> None:
        self.inside = inside
        self.hover = hover
        self.safe_height = safe_height
        self.clearance = clearance
        self.phase = "approach"
        self.phase_steps = 0
        self.retries = 0
        self.grasp: np.ndarray | None = None  # TCP grasp point, fixed when the descent starts
        self.yaw: float | None = None
        self.rim = False  # whether the object is held by its rim
        self.rim_sides: list[float] | None = None  # rim grasp directions (angles) in turn
        self.lift_start: tuple[float, float] | None = None  # (tcp z, object z) when lifting
        self.last_tcp: np.ndarray | None = None
        self.last_object: np.ndarray | None = None  # the object's centre at the last step
        self.last_yaw = 0.0
        self.stalled = 0

    def _goto(self, phase: str) -> None:
        self.phase, self.phase_steps, self.stalled = phase, 0, 0

    def choose_grasp(
        self, obj: Body, tcp: np.ndarray, yaw: float, clearance: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """(TCP point where the fingers close, hand yaw) for the object as it is now.

        An object narrow enough is held across its narrower side, at its centre, low enough
        to hold it firmly. A wider one (a bowl) is held by its wall, the fingers closing across
        it, from the sides in :meth:`rim_order` (one per try).
        """
        centre = obj.centre
        self.rim = obj.narrow_width() > MAX_GRASP_WIDTH
        if not self.rim:
            depth = min(0.03, 0.5 * (obj.top - obj.bottom))  # pads this far below the top
            z = max(obj.top - depth, obj.bottom + PAD_BELOW_TCP + 0.004)
            return np.array([centre[0], centre[1], z]), obj.grasp_yaw(yaw)
        corners = obj.corners()
        radius = 0.25 * float(np.sum(corners.max(0)[:2] - corners.min(0)[:2])) - RIM_INSET
        rim_z = obj.top - 0.02
        if self.rim_sides is None:
            facing = 0.5 * np.pi if tcp[1] >= centre[1] else -0.5 * np.pi
            self.rim_sides = rim_order(clearance, rim_z - PAD_BELOW_TCP - FINGER_ROOM, facing)
        angle = self.rim_sides[self.retries % len(self.rim_sides)]
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        rim = centre + radius * direction
        rim[2] = rim_z
        # turn the fingers' closing direction (world y at yaw 0) onto the radial one
        return rim, _nearest_turn(float(angle) - np.pi / 2, yaw)

    def _retry(self, tcp: np.ndarray):
        """Let go, back off upwards and plan a new grasp."""
        self.retries += 1
        self.grasp = None
        self._goto("approach")
        return tcp + [0.0, 0.0, 0.03], self.yaw, OPEN

    def step(
        self, tcp: np.ndarray, rot: np.ndarray, obj: Body, target: Body, clearance: np.ndarray
    ):
        """-> (TCP target position, hand yaw, gripper command) for this step."""
        self.phase_steps += 1
        # progress: the TCP's travel, a turn of the hand counted at 5 cm per radian
        yaw = hand_yaw(rot)
        moved = 1.0
        if self.last_tcp is not None:
            moved = np.linalg.norm(tcp - self.last_tcp) + 0.05 * abs(_wrap(yaw - self.last_yaw))
        self.stalled = self.stalled + 1 if moved < 0.001 else 0
        self.last_tcp, self.last_yaw = tcp.copy(), yaw
        # a grasp is planned on an object at rest (not one still tipping back after a slip)
        object_moved = 0.0
        if self.last_object is not None:
            object_moved = float(np.linalg.norm(obj.centre - self.last_object))
        self.last_object = obj.centre
        # The carried object's bottom must clear the target (and where it came from).
        carry_z = max(target.top, self.grasp[2] if self.grasp is not None else 0.0)

        if self.phase == "approach":
            point, self.yaw = self.choose_grasp(obj, tcp, hand_yaw(rot), clearance)
            above = point + [0.0, 0.0, self.hover]
            xy_error = np.linalg.norm(tcp[:2] - above[:2])
            turned = abs(_wrap(hand_yaw(rot) - self.yaw)) < 0.1
            over = xy_error < 0.015 and abs(tcp[2] - above[2]) < 0.03 and turned
            at_rest = object_moved < 0.001 or self.phase_steps > 60
            if over and at_rest:
                self.grasp = point
                self._goto("descend")
            elif self.stalled >= 5 and not over:  # stuck on something: try another grasp
                return self._retry(tcp)
            else:
                if xy_error > 0.02 or not turned:  # travel (and turn) high, then come down
                    above[2] = max(above[2], tcp[2], obj.top + self.safe_height)
                return above, self.yaw, OPEN
        if self.phase == "descend":
            blocked_above = BLOCKED_ABOVE_RIM if self.rim else BLOCKED_ABOVE
            if self.stalled >= 3 and tcp[2] > self.grasp[2] + blocked_above:
                return self._retry(tcp)
            if np.linalg.norm(tcp - self.grasp) < 0.006 or self.stalled >= 3:
                self._goto("close")
            else:
                return self.grasp, self.yaw, OPEN
        if self.phase == "close":
            if self.phase_steps > 10:
                self.lift_start = (float(tcp[2]), float(obj.centre[2]))
                self._goto("lift")
            else:
                return self.grasp, self.yaw, CLOSE
        grip_to_bottom = tcp[2] - obj.bottom
        carry = carry_z + self.clearance + grip_to_bottom
        if self.phase == "lift":
            tcp_rise = tcp[2] - self.lift_start[0]
            object_rise = obj.centre[2] - self.lift_start[1]
            if tcp_rise > 0.04 and object_rise < 0.5 * tcp_rise:  # it stayed behind
                return self._retry(tcp)
            if tcp[2] > carry - 0.02:
                self._goto("carry")
            else:
                return np.array([*self.grasp[:2], carry]), self.yaw, CLOSE
        # Keep the hold: steer the object's origin (what LIBERO's predicates test) onto the
        # target's (for a region: its centre), not the hand.
        offset = tcp - obj.pos
        place = target.pos
        if self.phase == "carry":
            goal = np.array([place[0] + offset[0], place[1] + offset[1], carry])
            xy_error = np.linalg.norm(tcp[:2] - goal[:2])
            # (a held object can stop the arm short of the goal: near is good enough then)
            if xy_error < 0.01 or (self.stalled >= 5 and xy_error < 0.02):
                self._goto("lower")
            else:
                return goal, self.yaw, CLOSE
        if self.phase == "lower":
            floor = target.bottom + 0.02 if self.inside else target.top
            goal = np.array(
                [place[0] + offset[0], place[1] + offset[1], floor + 0.01 + grip_to_bottom]
            )
            if abs(tcp[2] - goal[2]) < 0.006 or self.stalled >= 3:
                self._goto("release")
            else:
                return goal, self.yaw, CLOSE
        if self.phase == "release":
            if self.phase_steps > 6:
                self._goto("retreat")
            return tcp, self.yaw, OPEN
        return tcp + [0.0, 0.0, 0.05], self.yaw, OPEN


class LiberoExpert:
    """``act(obs, info)`` -> a 7-D OSC action for the current LIBERO goal.

    Reads ``goal``, ``goal_poses``, ``goal_boxes``, ``goal_clearance``, ``tcp_pos`` and
    ``tcp_quat`` from ``info``;
    a new episode (``info["elapsed_steps"] == 0``) or a new goal starts a new plan.
    """

    def __init__(self, action_chunk: int = 1, gain: float = 2.0, rot_gain: float = 1.0) -> None:
        if action_chunk < 1:
            raise ValueError(f"action_chunk must be >= 1, got {action_chunk}")
        self.action_chunk = int(action_chunk)
        self.gain = float(gain)
        self.rot_gain = float(rot_gain)
        self.reset()

    def reset(self) -> None:
        self._goal: str | None = None
        self._skill: PickPlace | None = None

    def act(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        missing = [k for k in INFO_KEYS if k not in info]
        if missing:
            raise KeyError(
                f"the LIBERO expert needs info entries {missing} (reported by VLA/LIBERO-* envs)"
            )
        goal = str(info["goal"])
        if goal != self._goal or int(info.get("elapsed_steps", 1)) == 0:
            self._goal, self._skill = goal, self._plan(goal)
        tcp = np.asarray(info["tcp_pos"], np.float64)
        rot = Rotation.from_quat(np.asarray(info["tcp_quat"], np.float64)).as_matrix()
        obj, target = Body.from_info(info, 0), Body.from_info(info, 1)
        clearance = np.asarray(info["goal_clearance"], np.float64)
        goal_pos, yaw, gripper = self._skill.step(tcp, rot, obj, target, clearance)
        move = np.clip(self.gain * (goal_pos - tcp) / POS_SCALE, -1.0, 1.0)
        turn = Rotation.from_matrix(yaw_rotation(yaw) @ rot.T).as_rotvec()
        turn = np.clip(self.rot_gain * turn / ROT_SCALE, -1.0, 1.0)
        return repeat_to_chunk(np.array([*move, *turn, gripper]), self.action_chunk)

    @staticmethod
    def _plan(goal: str) -> PickPlace:
        predicate = goal.split()[0]
        if predicate not in SUPPORTED_GOALS:
            raise ValueError(
                f"no scripted LIBERO skill for goal {goal!r}; supported predicates: "
                f"{SUPPORTED_GOALS}"
            )
        return PickPlace(inside=predicate == "in")


def make_expert(env_id: str, action_chunk: int = 1, **kwargs: Any) -> LiberoExpert:
    return LiberoExpert(action_chunk=action_chunk, **kwargs)
