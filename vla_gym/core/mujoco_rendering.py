"""Offscreen MuJoCo camera rendering shared by the MuJoCo-based adapters."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Mapping

import mujoco
import numpy as np

from vla_gym.core.decimate import check_mesh_budget, render_copy
from vla_gym.core.rendering import resolve_render_quality

# Renderers still open at exit must be closed before MuJoCo's EGL backend terminates its display
# (an atexit hook it registers when the first context is made), or their finalisers print EGL
# errors. atexit runs last-in first-out, so ours is registered after the first renderer exists.
_open_cameras: weakref.WeakSet[MujocoCameras] = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_cameras() -> None:
    for cameras in list(_open_cameras):
        cameras.close()


def apply_mujoco_render_quality(model: mujoco.MjModel, quality: str) -> None:
    """Fast quality: no shadow map, no multisampling (must run before a Renderer is made)."""
    if quality == "fast":
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0


class MujocoCameras:
    """Renders a fixed set of named cameras, each at its own (height, width).

    ``cameras`` maps our camera name to ``(mujoco camera name or id, height, width)``.
    One ``mujoco.Renderer`` (one GL context) is kept per distinct size. ``scene_option``
    (optional) selects what is drawn, e.g. which geom groups are visible. In fast quality,
    meshes and planes above ``mesh_budget`` triangles are drawn decimated (see
    :mod:`vla_gym.core.decimate`; ``None`` draws them whole); ``decimation`` then holds the
    triangle counts. ``model`` is not changed beyond its render settings.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        cameras: Mapping[str, tuple[str | int, int, int]],
        render_quality: str = "auto",
        scene_option: mujoco.MjvOption | None = None,
        mesh_budget: int | None = None,
    ) -> None:
        self.quality = resolve_render_quality(render_quality)
        mesh_budget = check_mesh_budget(mesh_budget)
        self._model = model
        self._scene_option = scene_option
        self._cameras = dict(cameras)
        apply_mujoco_render_quality(model, self.quality)
        sizes = {(h, w) for _, h, w in self._cameras.values()}
        model.vis.global_.offheight = max([model.vis.global_.offheight, *(h for h, _ in sizes)])
        model.vis.global_.offwidth = max([model.vis.global_.offwidth, *(w for _, w in sizes)])
        # The GL context takes its meshes from the model it is made with: the decimated copy.
        drawn, self.decimation = model, None
        if self.quality == "fast" and mesh_budget is not None:
            drawn, self.decimation = render_copy(model, mesh_budget)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        for h, w in sorted(sizes):
            renderer = mujoco.Renderer(drawn, height=h, width=w)
            # Scenes come from the simulated model, so changes an env makes to it at run time
            # (colours, site visibility, ...) are drawn; the copy differs only in mesh data.
            renderer._model = model
            if self.quality == "fast":
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self._renderers[(h, w)] = renderer
        _open_cameras.add(self)
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(_close_open_cameras)
            _exit_hook_registered = True

    @property
    def names(self) -> list[str]:
        return list(self._cameras)

    def render(self, data: mujoco.MjData, name: str) -> np.ndarray:
        camera, h, w = self._cameras[name]
        renderer = self._renderers[(h, w)]
        renderer.update_scene(data, camera=camera, scene_option=self._scene_option)
        if self.quality == "fast":  # update_scene may re-enable flags from the model defaults
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return renderer.render()

    def render_all(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        return {name: self.render(data, name) for name in self._cameras}

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
