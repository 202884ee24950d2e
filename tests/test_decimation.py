"""Decimated meshes for fast rendering: determinism, the on-disk cache, physics unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import vla_gym  # noqa: F401  (headless GL before MuJoCo is imported)
from vla_gym.core.decimate import check_mesh_budget, decimate_mesh, render_copy

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("fast_simplification")


def write_sphere(path: Path, radius: float = 1.0, rings: int = 24, segments: int = 48) -> None:
    """A textured UV sphere as an OBJ file (the longitude seam has its own texture column)."""
    lines = []
    for i in range(rings + 1):
        theta = np.pi * i / rings
        for j in range(segments + 1):
            phi = 2 * np.pi * j / segments
            x, y, z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
            lines.append(f"v {radius * x:.6f} {radius * y:.6f} {radius * z:.6f}")
            lines.append(f"vt {j / segments:.6f} {1 - i / rings:.6f}")
    for i in range(rings):
        for j in range(segments):
            a, b = i * (segments + 1) + j + 1, (i + 1) * (segments + 1) + j + 1
            for face in ((a, b, b + 1), (a, b + 1, a + 1)):
                lines.append("f " + " ".join(f"{k}/{k}" for k in face))
    path.write_text("\n".join(lines) + "\n")


def load(mesh_file: Path) -> mujoco.MjModel:
    xml = f"""
    <mujoco>
      <asset>
        <texture name="tex" type="2d" builtin="checker" width="32" height="32"/>
        <material name="mat" texture="tex"/>
        <mesh name="sphere" file="{mesh_file}"/>
      </asset>
      <worldbody>
        <geom type="plane" size="1 1 0.01"/>
        <body pos="0 0 2"><freejoint/><geom type="mesh" mesh="sphere" material="mat"/></body>
      </worldbody>
    </mujoco>"""
    return mujoco.MjModel.from_xml_string(xml)


def face_lists(model: mujoco.MjModel) -> tuple[np.ndarray, ...]:
    rows = slice(model.mesh_faceadr[0], model.mesh_faceadr[0] + model.mesh_facenum[0])
    return model.mesh_face[rows].copy(), model.mesh_facetexcoord[rows].copy()


@pytest.mark.parametrize("bad", [0, 8, -5, 2.5, "500", True])
def test_mesh_budget_validation(bad):
    with pytest.raises(ValueError, match="mesh_budget"):
        check_mesh_budget(bad)
    assert check_mesh_budget(None) is None and check_mesh_budget(500) == 500


def test_env_rejects_bad_mesh_budget():
    pytest.importorskip("gym_hil")
    import gymnasium as gym

    with pytest.raises(ValueError, match="mesh_budget must be"):
        gym.make("VLA/PandaPickCube-v0", mesh_budget=0)


def test_decimation_is_deterministic_and_cached(tmp_path):
    source, cache = tmp_path / "sphere.obj", tmp_path / "cache"
    write_sphere(source)
    model = load(source)
    faces_before = int(model.mesh_facenum[0])
    vert, face = model.mesh_vert.copy(), model.mesh_face.copy()
    copy, first = render_copy(model, 200, cache_dir=cache)
    assert (first.faces_before, first.meshes_decimated, first.cache_hits) == (faces_before, 1, 0)
    assert first.faces_after == copy.mesh_facenum[0] < faces_before / 2
    # The simulated model is untouched; the copy's faces index its own arrays.
    np.testing.assert_array_equal(model.mesh_vert, vert)
    np.testing.assert_array_equal(model.mesh_face, face)
    faces, texcoords = face_lists(copy)
    assert faces.max() < copy.mesh_vertnum[0] and texcoords.max() < copy.mesh_texcoordnum[0]

    again, second = render_copy(load(source), 200, cache_dir=cache)
    assert second.cache_hits == 1 and len(list(cache.iterdir())) == 1
    for a, b in zip(face_lists(copy), face_lists(again), strict=True):
        np.testing.assert_array_equal(a, b)
    # Without the cache the same input gives the same mesh.
    rows = slice(0, model.mesh_facenum[0])
    corners = (model.mesh_face[rows], model.mesh_facenormal[rows], model.mesh_facetexcoord[rows])
    points, *recomputed = decimate_mesh(model.mesh_vert, corners, 200, model.mesh_texcoord)
    np.testing.assert_array_equal(points, copy.mesh_vert[: copy.mesh_vertnum[0]])
    np.testing.assert_array_equal(recomputed[0], faces)

    write_sphere(source, radius=1.5)  # a changed source file: a new entry, built afresh
    stat = source.stat()  # MuJoCo's own asset cache goes by modification time
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    changed = render_copy(load(source), 200, cache_dir=cache)[1]
    assert changed.cache_hits == 0 and len(list(cache.iterdir())) == 2


def test_decimated_sphere_keeps_its_shape_and_texture(tmp_path):
    source = tmp_path / "sphere.obj"
    write_sphere(source)
    copy, _ = render_copy(load(source), 200, cache_dir=tmp_path / "cache")
    points = copy.mesh_vert[: copy.mesh_vertnum[0]]
    radius = np.linalg.norm(points, axis=1)  # MuJoCo centres a mesh on its centre of mass
    assert np.abs(radius - 1).max() < 0.05  # still the unit sphere
    _, texcoords = face_lists(copy)
    u = copy.mesh_texcoord[texcoords][..., 0]
    # A triangle spanning the seam would interpolate across the whole texture (u 0 -> 1).
    assert (u.max(axis=1) - u.min(axis=1)).max() < 0.5


def test_planes_drawn_within_budget(tmp_path):
    source = tmp_path / "sphere.obj"
    write_sphere(source)
    model = load(source)
    copy, _ = render_copy(model, 200, cache_dir=tmp_path / "cache")
    size = copy.geom_size[0]
    assert (2 * size[0] / size[2]) ** 2 * 2 <= 10 * 200 + 1e-6
    assert model.geom_size[0, 2] == pytest.approx(0.01)  # the simulated model keeps its own


def test_physics_unchanged_with_decimation(tmp_path, monkeypatch):
    pytest.importorskip("gym_hil")
    import gymnasium as gym

    monkeypatch.setenv("VLA_GYM_MESH_CACHE", str(tmp_path))
    envs = [
        gym.make(
            "VLA/PandaPickCubeVision-v0", image_size=32, render_quality="fast", mesh_budget=budget
        )
        for budget in (None, 500)
    ]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (8, 4)).astype(np.float32)
    runs = []
    for env in envs:
        obs, _ = env.reset(seed=3)
        states, frames = [], []
        for action in actions:
            obs, *_ = env.step(action)
            data = env.unwrapped.data
            states.append(np.concatenate([data.qpos, data.qvel, env.unwrapped._full_state()]))
            frames.append(obs["images"]["front"].astype(np.int16))
        runs.append((np.array(states), np.array(frames)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    decimation = envs[1].unwrapped._renderer.decimation
    assert decimation.faces_after < decimation.faces_before / 4
    difference = np.abs(runs[0][1] - runs[1][1]).mean()
    assert 0 < difference < 3  # the same scene, drawn coarser
    for env in envs:
        env.close()
