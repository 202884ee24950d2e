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
  * ``tcp_pos`` (3), ``tcp_quat`` (4, x y z w): the end-effector site the OSC controller moves.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

# the 8 corners of a unit box, for world bounding boxes of rotated geoms
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)


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
        for name in self.names:
            if name in problem_env.object_sites_dict:
                self.parts.append(("site", model.site(name).id))
            elif name in problem_env.obj_body_id:
                body = problem_env.obj_body_id[name]
                self.parts.append(("body", body, _collision_geoms(model, body)))
            else:
                raise KeyError(f"LIBERO goal {self.goal!r}: no object or region named {name!r}")

    def info(self) -> dict[str, Any]:
        model, data = self.env.sim.model._model, self.env.sim.data._data
        poses = np.zeros((2, 7))
        boxes = np.zeros((2, 6))
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
        tcp = self.env.robots[0].eef_site_id
        return {
            "goal": self.goal,
            "goal_poses": poses,
            "goal_boxes": boxes,
            "tcp_pos": data.site_xpos[tcp].copy(),
            "tcp_quat": _site_quat(data, tcp),
        }


def _collision_geoms(model: Any, root: int) -> np.ndarray:
    """Colliding geoms of body ``root`` and its descendants."""
    in_tree = np.zeros(model.nbody, bool)
    in_tree[root] = True
    for body in range(root + 1, model.nbody):  # MuJoCo numbers parents before children
        in_tree[body] = in_tree[model.body_parentid[body]]
    colliding = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    return np.flatnonzero(in_tree[model.geom_bodyid] & colliding)


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
