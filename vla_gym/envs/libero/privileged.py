"""Privileged state of a LIBERO task for scripted experts: the gripper and the goal's objects.

A LIBERO goal is a BDDL predicate such as ``(In alphabet_soup_1 basket_1_contain_region)`` or
``(On akita_black_bowl_1 plate_1)``; its arguments name objects, fixtures or regions (sites on
an object or on the table). :class:`GoalState` resolves the first predicate's (up to two)
arguments once per scene and reports, every step, where they are and how much room they take:

  * ``goal``: the predicate as text, e.g. ``"on akita_black_bowl_1 plate_1"``.
  * ``goal_poses`` ``(2, 7)``: position and quaternion (x, y, z, w) of each argument (for a
    region its site's pose); zeros for a missing second argument.
  * ``goal_boxes`` ``(2, 6)``: the box (min xyz, max xyz) around the collision geometry of each
    argument's object (for a region: the region's own box, as LIBERO's containment test reads
    it), in the frame of the argument's pose; with the pose it gives the extent along the
    argument's own axes. Zeros for a missing second argument.
  * ``goal_clearance`` ``(16,)``: the room beside the first argument, for choosing where a
    finger can go down next to it. For the direction at angle ``2 pi k / 16`` from world x, the
    height (world z) of the highest other collision geometry (its box) in a strip 2 cm wide
    from 0.5 to 5 cm outside the object's box along that direction (where an open finger goes
    down), the robot not counted; the object's bottom where nothing is there. Zeros for a
    region.
  * ``tcp_pos`` (3), ``tcp_quat`` (4, x y z w): the end-effector site the OSC controller moves.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

# the 8 corners of a unit box, for world bounding boxes of rotated geoms
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
CLEARANCE_DIRECTIONS = 16
# where the clearance rays go down: beyond the object's box (metres out) and across (sideways)
_CLEARANCE_OUT = (0.005, 0.025, 0.045)
_CLEARANCE_ACROSS = (-0.01, 0.01)


def _xyzw(wxyz: np.ndarray) -> np.ndarray:
    return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


def _site_quat(data: Any, site: int) -> np.ndarray:
    wxyz = np.empty(4)
    mujoco.mju_mat2Quat(wxyz, data.site_xmat[site])
    return _xyzw(wxyz)


class GoalState:
    """Resolves a LIBERO problem env's goal once; :meth:`info` reads the live poses."""

    def __init__(self, problem_env: Any) -> None:
        self.env = problem_env
        model = problem_env.sim.model._model
        goal = problem_env.parsed_problem["goal_state"][0]
        self.goal = " ".join(goal)
        self.names = list(goal[1:3])
        # per argument: ("site", site id) for a region, ("body", body id, collision geoms)
        self.parts: list[tuple] = []
        # what can stand beside the first argument: colliding geoms but its own and the robot's
        robot_root = model.body_rootid[model.site_bodyid[problem_env.robots[0].eef_site_id]]
        ignored_bodies = model.body_rootid == robot_root
        for name in self.names:
            if name in problem_env.object_sites_dict:
                self.parts.append(("site", model.site(name).id))
            elif name in problem_env.obj_body_id:
                body = problem_env.obj_body_id[name]
                self.parts.append(("body", body, _collision_geoms(model, body)))
            else:
                raise KeyError(f"LIBERO goal {self.goal!r}: no object or region named {name!r}")
        if self.parts and self.parts[0][0] == "body":
            ignored_bodies |= _in_tree(model, self.parts[0][1])
        colliding = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
        self._obstacles = np.flatnonzero(colliding & ~ignored_bodies[model.geom_bodyid])

    def info(self) -> dict[str, Any]:
        model, data = self.env.sim.model._model, self.env.sim.data._data
        poses = np.zeros((2, 7))
        boxes = np.zeros((2, 6))
        clearance = np.zeros(CLEARANCE_DIRECTIONS)
        for i, part in enumerate(self.parts):
            if part[0] == "site":
                site = part[1]
                poses[i] = [*data.site_xpos[site], *_site_quat(data, site)]
                boxes[i] = [*-model.site_size[site], *model.site_size[site]]
            else:
                _, body, geoms = part
                pos, rot = data.xpos[body], data.xmat[body].reshape(3, 3)
                poses[i] = [*pos, *_xyzw(data.xquat[body])]
                boxes[i] = _frame_box(model, data, geoms, pos, rot)
                if i == 0:
                    clearance = self._clearance(pos, rot, boxes[i])
        tcp = self.env.robots[0].eef_site_id
        return {
            "goal": self.goal,
            "goal_poses": poses,
            "goal_boxes": boxes,
            "goal_clearance": clearance,
            "tcp_pos": data.site_xpos[tcp].copy(),
            "tcp_quat": _site_quat(data, tcp),
        }

    def _clearance(self, pos: np.ndarray, rot: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``goal_clearance`` for an object at ``(pos, rot)`` with ``box`` in that frame."""
        model, data = self.env.sim.model._model, self.env.sim.data._data
        corners = (box[:3] + (_CORNERS + 1) / 2 * (box[3:] - box[:3])) @ rot.T + pos
        centre = corners.mean(0)
        angles = 2 * np.pi * np.arange(CLEARANCE_DIRECTIONS) / CLEARANCE_DIRECTIONS
        out = np.stack([np.cos(angles), np.sin(angles)], 1)  # (K, 2)
        across = np.stack([-out[:, 1], out[:, 0]], 1)
        reach = ((corners[:, :2] - centre[:2]) @ out.T).max(0)  # the box's edge each way
        distance = reach[:, None] + np.array(_CLEARANCE_OUT)  # (K, D)
        points = (
            centre[:2]
            + distance[:, :, None, None] * out[:, None, None, :]
            + np.array(_CLEARANCE_ACROSS)[None, None, :, None] * across[:, None, None, :]
        )  # (K, D, A, 2)
        # only geoms whose bounding sphere reaches the strips above the object's bottom
        bottom = corners[:, 2].min()
        span = np.linalg.norm(points.reshape(-1, 2) - centre[:2], axis=1).max()
        obstacles, radius = self._obstacles, model.geom_rbound[self._obstacles]
        gap = np.linalg.norm(data.geom_xpos[obstacles, :2] - centre[:2], axis=1)
        near = obstacles[(gap < span + radius) & (data.geom_xpos[obstacles, 2] + radius > bottom)]
        tops = _box_tops(model, data, near, points.reshape(-1, 2))
        heights = tops.reshape(CLEARANCE_DIRECTIONS, -1).max(1)
        return np.maximum(heights, bottom)  # nothing there: the object's bottom


def _box_tops(model: Any, data: Any, geoms: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Per point ``xy`` (n, 2): the highest top of the geoms' boxes that the vertical line
    through it crosses (-inf where it crosses none). A box is a geom's bounding box in its own
    frame (exact for boxes, around meshes and the other shapes)."""
    if len(geoms) == 0:
        return np.full(len(xy), -np.inf)
    rot = data.geom_xmat[geoms].reshape(-1, 3, 3)  # (G, 3, 3), columns = the box's axes
    half = model.geom_aabb[geoms, 3:]
    centre = data.geom_xpos[geoms] + np.einsum("gij,gj->gi", rot, model.geom_aabb[geoms, :3])
    # the line (x, y, z) in a box's frame is a + z b, with b = rot^T e_z = the row rot[2]
    relative = xy[None] - centre[:, None, :2]  # (G, n, 2)
    a = np.einsum("gnj,gji->gni", relative, rot[:, :2]) - centre[:, None, 2:] * rot[:, None, 2]
    b = np.broadcast_to(rot[:, None, 2], a.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = (-half[:, None] - a) / b, (half[:, None] - a) / b
    parallel = np.abs(b) < 1e-9  # a box axis is horizontal to the line: inside or not at all
    inside = np.abs(a) <= half[:, None]
    low = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(low, high))
    high = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(low, high))
    bottom, top = low.max(2), high.min(2)  # (G, n)
    return np.where(bottom <= top, top, -np.inf).max(0)


def _in_tree(model: Any, root: int) -> np.ndarray:
    """Mask over bodies: ``root`` and its descendants."""
    in_tree = np.zeros(model.nbody, bool)
    in_tree[root] = True
    for body in range(root + 1, model.nbody):  # MuJoCo numbers parents before children
        in_tree[body] = in_tree[model.body_parentid[body]]
    return in_tree


def _collision_geoms(model: Any, root: int) -> np.ndarray:
    """Colliding geoms of body ``root`` and its descendants."""
    colliding = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    return np.flatnonzero(_in_tree(model, root)[model.geom_bodyid] & colliding)


def _frame_box(
    model: Any, data: Any, geoms: np.ndarray, pos: np.ndarray, rot: np.ndarray
) -> np.ndarray:
    """Box (min, max) around the geoms' bounding-box corners in the frame ``(pos, rot)``."""
    if len(geoms) == 0:  # nothing collides (a purely visual object): no extent
        return np.zeros(6)
    aabb = model.geom_aabb[geoms]  # (n, 6): centre and half-sizes in each geom's frame
    local = aabb[:, None, :3] + _CORNERS[None] * aabb[:, None, 3:]
    geom_rot = data.geom_xmat[geoms].reshape(-1, 3, 3)
    world = np.einsum("nij,nkj->nki", geom_rot, local) + data.geom_xpos[geoms][:, None]
    in_frame = (world.reshape(-1, 3) - pos) @ rot  # rot.T @ (p - pos) for every corner
    return np.concatenate([in_frame.min(0), in_frame.max(0)])
