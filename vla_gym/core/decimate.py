"""Coarser meshes for drawing MuJoCo scenes in ``render_quality="fast"``.

Mesa's CPU rasteriser spends a frame on triangles, not pixels, and the benchmark scenes carry
meshes made for close-up pictures (the gym-hil Panda + Robotiq alone has 192k triangles). In fast
quality every mesh above ``mesh_budget`` triangles is drawn with a quadric-decimated version of
itself (``fast-simplification``) of about ``mesh_budget`` triangles, and planes, which MuJoCo
draws as a grid of quads at their render spacing (the third size; 0.01 m on gym-hil's 6 m floor
gives 40k quads), get a spacing that keeps them within ten times that budget.

Physics never sees any of it: :func:`render_copy` returns a decimated copy of the model, used
only to upload meshes to the GL context; the scene is still built from the simulated model and
its data (see :class:`vla_gym.core.mujoco_rendering.MujocoCameras`). The copy's meshes are
decimated as compiled (in the mesh frame MuJoCo placed them in), so they line up with their
geoms. Textured meshes are cut along their UV seams before decimation (a vertex is a position
plus a texture coordinate), and each kept vertex keeps its own texture coordinate and normal.

Decimated meshes are cached on disk, keyed by a hash of the mesh as compiled from its source file
(vertices, faces, texture seams) and the budget: a changed source file gives a new key and a
rebuild. The folder is ``$VLA_GYM_MESH_CACHE``, else ``$XDG_CACHE_HOME/vla_gym/meshes``, else
``~/.cache/vla_gym/meshes``.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vla_gym.core.deps import require

# Triangles per mesh in fast quality (see benchmarks/decimation_speed.py for the measurements).
DEFAULT_MESH_BUDGET = 500
_MIN_MESH_BUDGET = 16  # below this decimation destroys shapes rather than simplifying them
_CACHE_VERSION = b"vla_gym-decimate-1"  # bump when the algorithm changes: old entries go unused
# fast-simplification's default (7) lets some vertices drift a few % of the mesh size: right next
# to a camera (the Robotiq base under the wrist camera) that shows. 3 keeps them in place.
_AGGRESSIVENESS = 3.0
# A floor spans much of a picture and is lit per vertex: it keeps a finer grid than one mesh.
_PLANE_BUDGETS = 10


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


def render_copy(
    model: mujoco.MjModel, budget: int, cache_dir: Path | None = None
) -> tuple[mujoco.MjModel, DecimationStats]:
    """A copy of ``model`` whose meshes and planes are drawn with at most about ``budget``
    triangles each (``model`` itself is not changed), and the triangle counts."""
    budget = check_mesh_budget(budget)
    if budget is None:
        raise ValueError("render_copy needs a budget, got None")
    cache = cache_dir if cache_dir is not None else mesh_cache_dir()
    drawn = copy.copy(model)  # a full copy (mj_copyModel)
    _coarsen_planes(drawn, budget)
    decimated = hits = 0
    for mesh_id in np.flatnonzero(drawn.mesh_facenum > budget):
        rows = slice(
            drawn.mesh_faceadr[mesh_id], drawn.mesh_faceadr[mesh_id] + drawn.mesh_facenum[mesh_id]
        )
        vert_adr, vert_num = drawn.mesh_vertadr[mesh_id], drawn.mesh_vertnum[mesh_id]
        textured = drawn.mesh_texcoordnum[mesh_id] > 0
        corners = (drawn.mesh_face[rows], drawn.mesh_facenormal[rows])
        if textured:
            corners += (drawn.mesh_facetexcoord[rows],)
        vertices = drawn.mesh_vert[vert_adr : vert_adr + vert_num]
        texcoords = drawn.mesh_texcoord[drawn.mesh_texcoordadr[mesh_id] :][
            : drawn.mesh_texcoordnum[mesh_id]
        ]
        (points, *new_corners), hit = _cached_decimation(
            vertices, corners, texcoords, budget, cache
        )
        if len(points) > vert_num:  # seams split more vertices than collapses removed
            continue
        face_rows = slice(rows.start, rows.start + len(new_corners[0]))
        drawn.mesh_vert[vert_adr : vert_adr + len(points)] = points
        drawn.mesh_vertnum[mesh_id] = len(points)
        drawn.mesh_face[face_rows] = new_corners[0]
        drawn.mesh_facenormal[face_rows] = new_corners[1]
        if textured:
            drawn.mesh_facetexcoord[face_rows] = new_corners[2]
        drawn.mesh_facenum[mesh_id] = len(new_corners[0])
        decimated += 1
        hits += hit
    stats = DecimationStats(
        int(model.mesh_facenum.sum()), int(drawn.mesh_facenum.sum()), decimated, hits
    )
    return drawn, stats


def _coarsen_planes(model: mujoco.MjModel, budget: int) -> None:
    """Widen the render grid of sized planes to at most ``_PLANE_BUDGETS * budget`` triangles."""
    quads_per_side = max(1.0, np.sqrt(_PLANE_BUDGETS * budget / 2))  # 2 triangles per quad
    for geom in np.flatnonzero(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE):
        extent = 2 * float(model.geom_size[geom, :2].max())  # 0 for an infinite plane: as is
        model.geom_size[geom, 2] = max(model.geom_size[geom, 2], extent / quads_per_side)


def _cached_decimation(
    vertices: np.ndarray,
    corners: tuple[np.ndarray, ...],
    texcoords: np.ndarray,
    budget: int,
    cache: Path,
) -> tuple[tuple[np.ndarray, ...], bool]:
    """``decimate_mesh`` through the on-disk cache; also says whether the cache answered."""
    digest = hashlib.sha256(_CACHE_VERSION + f"{budget} {_AGGRESSIVENESS}".encode())
    digest.update(np.ascontiguousarray(vertices, np.float32).tobytes())
    digest.update(np.ascontiguousarray(texcoords, np.float32).tobytes())
    # The position and texture indices define the surface and its seams; normals only follow.
    for array in corners[:1] + corners[2:]:
        digest.update(np.ascontiguousarray(array, np.int32).tobytes())
    path = cache / f"{digest.hexdigest()}.npz"
    try:
        with np.load(path) as stored:
            return tuple(stored[f"array{i}"] for i in range(len(corners) + 1)), True
    except (OSError, KeyError, ValueError):  # missing or unreadable: rebuild
        pass
    result = decimate_mesh(vertices, corners, budget, texcoords)
    cache.mkdir(parents=True, exist_ok=True)
    # Written under a unique name and renamed: envs building in parallel never read half a file.
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, **{f"array{i}": array for i, array in enumerate(result)})
    os.replace(partial, path)
    return result, False


def decimate_mesh(
    vertices: np.ndarray,
    corners: tuple[np.ndarray, ...],
    budget: int,
    texcoords: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Decimate a triangle mesh to about ``budget`` faces: ``(points, *corners)``.

    ``corners`` are ``(F, 3)`` index arrays with one entry per face corner: the position index
    (into ``vertices``) first, then attribute indices (normal, texture coordinate). Returns the
    new positions and the same index arrays for the new faces, positions indexing ``points``,
    attributes the original attribute arrays. With ``texcoords`` (the array the third index
    points into), corners are split by position and texture coordinate (normals follow, texture
    seams do not), so seams become borders.
    """
    fast_simplification = require(
        "fast_simplification",
        extra="panda",
        what="Decimated meshes (render_quality='fast'; mesh_budget=None turns them off)",
    )

    stacked = np.stack(corners, axis=-1).reshape(-1, len(corners)).astype(np.int64)
    # Meshes from OBJ files often repeat a position (and texture coordinate) per face: weld them
    # by value, or every edge is a border and decimation shreds the surface.
    positions, welded = np.unique(vertices, axis=0, return_inverse=True)
    split_key = welded.ravel()[stacked[:, :1]]
    if texcoords is not None and len(corners) > 2:
        _, uv = np.unique(texcoords, axis=0, return_inverse=True)
        split_key = np.column_stack([split_key, uv.ravel()[stacked[:, 2]]])
    keys, first, faces = np.unique(split_key, axis=0, return_index=True, return_inverse=True)
    faces = faces.reshape(-1, 3)
    faces = faces[_proper(faces)]  # welding can leave slivers with two equal corners
    points = positions[keys[:, 0]].astype(np.float64)
    new_points, new_faces, collapses = fast_simplification.simplify(
        points, faces, target_count=budget, agg=_AGGRESSIVENESS, return_collapses=True
    )
    # collapses[i] = (kept, removed): follow each vertex to the one it finally merged into. The
    # library numbers its output vertices in the order of these survivors, so a new vertex keeps
    # the attributes of the split vertex it grew from.
    survivor = np.arange(len(keys))
    survivor[collapses[:, 1]] = collapses[:, 0]
    while not np.array_equal(survivor, survivor[survivor]):
        survivor = survivor[survivor]
    merged = survivor[faces]
    origin = np.unique(merged[_proper(merged)])  # the kept faces' vertices, in order
    if len(origin) != len(new_points):
        raise RuntimeError("fast-simplification numbered its output vertices unexpectedly")
    attributes = stacked[first][origin]  # per new vertex: one original corner's indices
    result = [new_points.astype(np.float32), new_faces.astype(np.int32)]
    result += [attributes[new_faces, k].astype(np.int32) for k in range(1, len(corners))]
    return tuple(result)


def _proper(faces: np.ndarray) -> np.ndarray:
    """Which faces have three distinct corners."""
    a, b, c = faces.T
    return (a != b) & (b != c) & (a != c)
