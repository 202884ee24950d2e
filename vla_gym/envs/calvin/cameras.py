"""CALVIN's two cameras (spec §4) and the PyBullet renderer choice.

``render_quality="fast"`` renders with PyBullet's CPU TinyRenderer, shadows off.
``"full"`` loads the EGL hardware renderer plugin (CALVIN's own setting) when it can be loaded
and falls back to TinyRenderer otherwise; ``CalvinEnv`` reports the renderer in ``info``.
"""

from __future__ import annotations

import os
import pkgutil

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

    def __init__(self, client, sizes: dict[str, int], use_egl: bool) -> None:
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
        _, _, rgba, _, _ = self.p.getCameraImage(
            size,
            size,
            viewMatrix=view,
            projectionMatrix=proj,
            renderer=self.renderer,
            shadow=0,
            flags=self.p.ER_NO_SEGMENTATION_MASK,
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()


def gripper_view_matrix(client, position, orientation):
    """CALVIN's gripper camera: looks along the link's +y with up = -z (spec §4)."""
    rot = np.array(client.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    target = np.asarray(position) + rot[:, 1]
    return client.computeViewMatrix(position, target.tolist(), (-rot[:, 2]).tolist())
