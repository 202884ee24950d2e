"""Coarser triangle lists for drawing MuJoCo meshes in ``render_quality="fast"``.

Mesa's CPU rasteriser spends a frame on triangles, not pixels, and the benchmark scenes carry
meshes made for close-up pictures (the gym-hil Panda + Robotiq alone has 192k triangles). In fast
quality every mesh above ``mesh_budget`` triangles is drawn with a quadric-decimated version of
itself (``fast-simplification``) of about ``mesh_budget`` triangles, and planes, which MuJoCo
draws as a grid of quads at their render spacing (the third size; 0.01 m on gym-hil's 6 m floor
gives 40k quads), get a spacing that keeps them within the same budget.

Only what the renderer draws changes. The decimated mesh keeps a subset of the original vertices
at their original positions, so the compiled model's vertex, normal and texture-coordinate arrays,
its convex hulls (what MuJoCo collides with), masses and inertias (computed by the compiler from
the full mesh) stay as they are: physics is identical (a plane's third size is read by the
renderer only). The mesh's face list is rewritten in place
(``mesh_face``, ``mesh_facenormal``, ``mesh_facetexcoord`` and a smaller ``mesh_facenum``), before
the GL context uploads it. The one other reader of face lists, ``mj_ray`` (rangefinders, picking),
then sees the coarse surface too.

Textured meshes are cut along their UV seams before decimation (a vertex is a position plus a
texture coordinate), so each kept corner keeps its own texture coordinate.

Decimated face lists are cached on disk, keyed by a hash of the mesh as compiled from its source
file (vertices, faces, texture seams) and the budget: a changed source file gives a new key and a
rebuild. The folder is ``$VLA_GYM_MESH_CACHE``, else ``$XDG_CACHE_HOME/vla_gym/meshes``, else
``~/.cache/vla_gym/meshes``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

# Triangles per mesh in fast quality (see benchmarks/decimation_speed.py for the measurements).
DEFAULT_MESH_BUDGET = 2000
_MIN_MESH_BUDGET = 16  # below this decimation destroys shapes rather than simplifying them
_CACHE_VERSION = b"vla_gym-decimate-1"  # bump when the algorithm changes: old entries go unused


def check_mesh_budget(budget: object) -> int | None:
    """Validate a ``mesh_budget`` setting: an int >= 16 (triangles per mesh) or None (no cap)."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"mesh_budget must be an int (triangles per mesh) or None, got {budget!r}")
    if budget < _MIN_MESH_BUDGET:
        raise ValueError(f"mesh_budget must be >= {_MIN_MESH_BUDGET} triangles, got {budget!r}")
    return int(budget)


def mesh_cache_dir() -> Path:
    """The folder of cached decimated meshes (see the module doc for the order of choices)."""
    if os.environ.get("VLA_GYM_MESH_CACHE"):
        return Path(os.environ["VLA_GYM_MESH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vla_gym" / "meshes"


@dataclass(frozen=True)
class DecimationStats:
    faces_before: int  # triangles of all meshes of the model
    faces_after: int
    meshes_decimated: int
    cache_hits: int


def decimate_model(
    model: mujoco.MjModel, budget: int, cache_dir: Path | None = None
) -> DecimationStats:
    """Draw every mesh and plane of ``model`` with at most about ``budget`` triangles.

    Run it before a ``mujoco.Renderer`` is made for the model (the GL context uploads meshes
    once). Running it again on the same model changes nothing (its meshes are within budget).
    """
    budget = check_mesh_budget(budget)
    if budget is None:
        raise ValueError("decimate_model needs a budget, got None")
    _coarsen_planes(model, budget)
    cache = cache_dir if cache_dir is not None else mesh_cache_dir()
    before = int(model.mesh_facenum.sum())
    decimated = hits = 0
    for mesh_id in np.flatnonzero(model.mesh_facenum > budget):
        adr, num = int(model.mesh_faceadr[mesh_id]), int(model.mesh_facenum[mesh_id])
        rows = slice(adr, adr + num)
        vertices = model.mesh_vert[model.mesh_vertadr[mesh_id] :][: model.mesh_vertnum[mesh_id]]
        textured = model.mesh_texcoordnum[mesh_id] > 0
        corners = (model.mesh_face[rows], model.mesh_facenormal[rows])
        if textured:
            corners += (model.mesh_facetexcoord[rows],)
        new_corners, hit = _cached_decimation(vertices, corners, budget, cache)
        count = len(new_corners[0])
        model.mesh_face[adr : adr + count] = new_corners[0]
        model.mesh_facenormal[adr : adr + count] = new_corners[1]
        if textured:
            model.mesh_facetexcoord[adr : adr + count] = new_corners[2]
        model.mesh_facenum[mesh_id] = count
        decimated += 1
        hits += hit
    return DecimationStats(before, int(model.mesh_facenum.sum()), decimated, hits)


def _coarsen_planes(model: mujoco.MjModel, budget: int) -> None:
    """Widen the render grid of sized planes to at most ``budget`` triangles (2 per quad)."""
    quads_per_side = max(1.0, np.sqrt(budget / 2))
    for geom in np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE):
        extent = 2 * float(model.geom_size[geom, :2].max())  # 0 for an infinite plane: as is
        model.geom_size[geom, 2] = max(model.geom_size[geom, 2], extent / quads_per_side)


def _cached_decimation(
    vertices: np.ndarray, corners: tuple[np.ndarray, ...], budget: int, cache: Path
) -> tuple[tuple[np.ndarray, ...], bool]:
    """``decimate_faces`` through the on-disk cache; also says whether the cache answered."""
    digest = hashlib.sha256(_CACHE_VERSION + str(budget).encode())
    digest.update(np.ascontiguousarray(vertices, np.float32).tobytes())
    # The position and texture indices define the surface and its seams; normals only follow.
    for array in corners[:1] + corners[2:]:
        digest.update(np.ascontiguousarray(array, np.int32).tobytes())
    path = cache / f"{digest.hexdigest()}.npz"
    try:
        with np.load(path) as stored:
            return tuple(stored[f"corners{i}"] for i in range(len(corners))), True
    except (OSError, KeyError, ValueError):  # missing or unreadable: rebuild
        pass
    result = decimate_faces(vertices, corners, budget)
    cache.mkdir(parents=True, exist_ok=True)
    # Written under a unique name and renamed: envs building in parallel never read half a file.
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, **{f"corners{i}": array for i, array in enumerate(result)})
    os.replace(partial, path)
    return result, False


def decimate_faces(
    vertices: np.ndarray, corners: tuple[np.ndarray, ...], budget: int
) -> tuple[np.ndarray, ...]:
    """Decimate a triangle mesh to about ``budget`` faces, keeping a subset of its vertices.

    ``corners`` are ``(F, 3)`` index arrays with one entry per face corner: the position index
    (into ``vertices``) first, then attribute indices (normal, texture coordinate). Returns the
    same arrays for the decimated faces. A corner is split by position and every attribute but
    the second (normals are smoothed, textures are not); the mesh is decimated over those split
    vertices, so texture seams become borders and each kept corner keeps its attributes.
    """
    import fast_simplification

    stacked = np.stack(corners, axis=-1).reshape(-1, len(corners)).astype(np.int64)
    split_key = np.delete(stacked, 1, axis=1) if len(corners) > 1 else stacked
    keys, first, faces = np.unique(split_key, axis=0, return_index=True, return_inverse=True)
    faces = faces.reshape(-1, 3)
    points = np.asarray(vertices, np.float64)[keys[:, 0]]
    _, _, collapses = fast_simplification.simplify(
        points, faces, target_count=budget, return_collapses=True
    )
    # collapses[i] = (kept, removed): follow each vertex to the one it finally merged into.
    survivor = np.arange(len(keys))
    survivor[collapses[:, 1]] = collapses[:, 0]
    while not np.array_equal(survivor, survivor[survivor]):
        survivor = survivor[survivor]
    faces = survivor[faces]
    a, b, c = faces.T
    faces = faces[(a != b) & (b != c) & (a != c)]  # collapsed triangles
    attributes = stacked[first]  # one corner's indices per split vertex
    return tuple(attributes[faces, k].astype(np.int32) for k in range(len(corners)))
