"""CALVIN's two cameras (spec §4) and the PyBullet renderer choice.

``render_quality="fast"`` renders with PyBullet's CPU TinyRenderer, shadows off.
``"full"`` loads the EGL hardware renderer plugin (CALVIN's own setting) when it can be loaded
and falls back to TinyRenderer otherwise; ``CalvinEnv`` reports the renderer in ``info``.

TinyRenderer transforms every triangle of every body for every image, also those outside the
view: the official Panda meshes (about 108k triangles) cost more than the gripper camera's own
pixels. :class:`LinkCulling` skips, per image, the robot links whose bounding sphere lies wholly
outside the camera's view, so the images are the same as without it.
"""

from __future__ import annotations

import os
import pkgutil
from functools import cache

import numpy as np

STATIC_EYE = (2.871459009488717, -2.166602199425597, 2.555159848480571)
STATIC_TARGET = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
STATIC_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)
STATIC_FOV, STATIC_NEAR, STATIC_FAR = 10.0, 0.01, 10.0
GRIPPER_FOV, GRIPPER_NEAR, GRIPPER_FAR = 75.0, 0.01, 2.0
DEFAULT_SIZES = {"static": 200, "gripper": 84}


def load_egl_plugin(client) -> bool:
    """Load PyBullet's EGL renderer into ``client``; False when it is not available."""
    loader = pkgutil.get_loader("eglRenderer")
    if loader is None:
        return False
    device = os.environ.get("EGL_DEVICE_ID")
    if device is not None:  # the vector layer pins a worker's EGL device this way
        os.environ.setdefault("EGL_VISIBLE_DEVICES", device)
    try:
        plugin = client.loadPlugin(loader.get_filename(), "_eglRendererPlugin")
    except Exception:  # noqa: BLE001 - any failure means "no EGL here"
        return False
    return plugin >= 0


class Cameras:
    """Renders ``static`` and ``gripper`` RGB images at configurable square sizes."""

    def __init__(
        self, client, sizes: dict[str, int], use_egl: bool, robot: int | None = None
    ) -> None:
        unknown = set(sizes) - set(DEFAULT_SIZES)
        if unknown:
            raise ValueError(f"CALVIN cameras are 'static' and 'gripper', got {sorted(unknown)}")
        self.p = client
        self.sizes = dict(sizes)
        self.renderer = client.ER_BULLET_HARDWARE_OPENGL if use_egl else client.ER_TINY_RENDERER
        self.renderer_name = "egl" if use_egl else "tiny"
        self.static_view = client.computeViewMatrix(STATIC_EYE, STATIC_TARGET, STATIC_UP)
        self.static_proj = client.computeProjectionMatrixFOV(
            STATIC_FOV, 1.0, STATIC_NEAR, STATIC_FAR
        )
        self.gripper_proj = client.computeProjectionMatrixFOV(
            GRIPPER_FOV, 1.0, GRIPPER_NEAR, GRIPPER_FAR
        )
        # Only TinyRenderer skips zero-alpha shapes; a GPU renderer may still write their depth.
        culling = LinkCulling(client, robot) if robot is not None and not use_egl else None
        # None when no link is heavy enough to be worth it (the builtin robot's light meshes).
        self.culling = culling if culling is not None and culling.links else None

    def render(self, robot_camera_pose) -> dict[str, np.ndarray]:
        images = {}
        if "static" in self.sizes:
            images["static"] = self._render(
                self.sizes["static"], self.static_view, self.static_proj
            )
        if "gripper" in self.sizes:
            view = gripper_view_matrix(self.p, *robot_camera_pose)
            images["gripper"] = self._render(self.sizes["gripper"], view, self.gripper_proj)
        return images

    def _render(self, size: int, view, proj) -> np.ndarray:
        hidden = self.culling.hide_outside(view, proj) if self.culling is not None else []
        try:
            _, _, rgba, _, _ = self.p.getCameraImage(
                size,
                size,
                viewMatrix=view,
                projectionMatrix=proj,
                renderer=self.renderer,
                shadow=0,
                flags=self.p.ER_NO_SEGMENTATION_MASK,
            )
        finally:
            if hidden:
                self.culling.restore(hidden)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()


def gripper_view_matrix(client, position, orientation):
    """CALVIN's gripper camera: looks along the link's +y with up = -z (spec §4)."""
    rot = np.array(client.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    target = np.asarray(position) + rot[:, 1]
    return client.computeViewMatrix(position, target.tolist(), (-rot[:, 2]).tolist())


class LinkCulling:
    """Hides (alpha 0, which TinyRenderer skips) the links of one body that a view cannot see.

    A link qualifies when it has exactly one visual shape (so its colour can be put back exactly)
    and that is an OBJ mesh of at least ``MIN_TRIANGLES`` faces: for lighter shapes the check
    costs more than drawing them. Its bounding sphere is fixed in the URDF link frame, where
    PyBullet places the visual (``getVisualShapeData``'s local frame).
    """

    MARGIN = 0.01  # metres added to every radius; the view's half-angles are widened by 5%
    MIN_TRIANGLES = 1000

    def __init__(self, client, body: int) -> None:
        self.p, self.body = client, body
        shapes: dict[int, list] = {}
        for shape in client.getVisualShapeData(body):
            shapes.setdefault(shape[1], []).append(shape)
        self.links: list[int] = []
        centres, radii = [], []
        for link, link_shapes in sorted(shapes.items()):
            mesh = obj_mesh(link_shapes[0]) if len(link_shapes) == 1 else None
            if mesh is None or mesh[1] < self.MIN_TRIANGLES:
                continue
            vertices = mesh[0] * np.asarray(link_shapes[0][3])  # the mesh scale
            centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
            radius = float(np.max(np.linalg.norm(vertices - centre, axis=1)))
            pos, orn = link_shapes[0][5], link_shapes[0][6]
            self.links.append(link)
            centres.append(np.asarray(pos) + rotate(np.asarray(orn), centre))
            radii.append(radius + self.MARGIN)
        self.local_centres = np.array(centres).reshape(-1, 3)
        self.radii = np.array(radii)
        self.arm_links = [link for link in self.links if link >= 0]
        # The base's pose is its inertial frame; this takes it back to the URDF frame.
        self.base_from_inertial = client.invertTransform(*client.getDynamicsInfo(body, -1)[3:5])

    def link_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """World positions and quaternions (xyzw) of the qualifying links' URDF frames."""
        frames = []
        if -1 in self.links:
            inertial = self.p.getBasePositionAndOrientation(self.body)
            frames.append(self.p.multiplyTransforms(*inertial, *self.base_from_inertial))
        if self.arm_links:
            states = self.p.getLinkStates(self.body, self.arm_links, computeForwardKinematics=True)
            frames += [(state[4], state[5]) for state in states]
        return np.array([f[0] for f in frames]), np.array([f[1] for f in frames])

    def hide_outside(self, view, proj) -> list[tuple[int, tuple[float, ...]]]:
        """Hide the links wholly outside the view; returns (link, colour) pairs to restore."""
        if not self.links:
            return []
        positions, orientations = self.link_frames()
        centres = positions + rotate(orientations, self.local_centres)
        view_m = np.array(view).reshape(4, 4).T  # column-major -> world to eye
        eye = centres @ view_m[:3, :3].T + view_m[:3, 3]
        depth = -eye[:, 2]  # the camera looks along -z
        outside = depth + self.radii < 0  # wholly behind the eye
        for axis, focal in ((0, proj[0]), (1, proj[5])):
            slope = 1.05 / focal  # inside the view: |x| <= slope * depth
            norm = np.sqrt(1 + slope**2)
            for sign in (1, -1):
                outside |= (sign * eye[:, axis] - slope * depth) / norm > self.radii
        hidden = [self.links[i] for i in np.flatnonzero(outside)]
        if not hidden:
            return []
        colours = {shape[1]: shape[7] for shape in self.p.getVisualShapeData(self.body)}
        for link in hidden:
            self.p.changeVisualShape(self.body, link, rgbaColor=[0, 0, 0, 0])
        return [(link, colours[link]) for link in hidden]

    def restore(self, hidden: list[tuple[int, tuple[float, ...]]]) -> None:
        for link, colour in hidden:
            self.p.changeVisualShape(self.body, link, rgbaColor=colour)


def rotate(quaternions: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) by unit quaternions (..., 4), xyzw as PyBullet orders them."""
    q, w = quaternions[..., :3], quaternions[..., 3:]
    t = 2 * np.cross(q, vectors)
    return vectors + w * t + np.cross(q, t)


def obj_mesh(shape) -> tuple[np.ndarray, int] | None:
    """A visual shape's OBJ vertices (unscaled) and face count; None for other shapes."""
    filename = shape[4].decode() if isinstance(shape[4], bytes) else str(shape[4])
    if shape[2] != 5 or not filename.lower().endswith(".obj"):  # 5 = GEOM_MESH
        return None
    return read_obj(filename)


@cache
def read_obj(path: str) -> tuple[np.ndarray, int]:
    vertices, faces = [], 0
    with open(path) as file:
        for line in file:
            if line.startswith("v "):
                vertices.append(line.split()[1:4])
            elif line.startswith("f "):
                faces += 1
    return np.array(vertices, dtype=float).reshape(-1, 3), faces
