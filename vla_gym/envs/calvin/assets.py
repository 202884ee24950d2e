"""Where the CALVIN scene files come from: the official folder or the project's builtin URDFs.

``assets="official"`` loads a folder laid out like a ``calvin_env`` checkout (``data/``,
``conf/``), given as ``calvin_root=`` or ``$VLA_GYM_CALVIN_ROOT``. ``assets="builtin"`` uses
URDFs generated from primitives. ``assets="auto"`` (the default) is official when such a
folder is given and builtin otherwise, so the env works on a fresh machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vla_gym.envs.calvin import builtin_assets
from vla_gym.envs.calvin.layout import BLOCKS, SceneLayout

ROOT_ENV_VAR = "VLA_GYM_CALVIN_ROOT"
ASSET_MODES = ("auto", "official", "builtin")
OFFICIAL_SCALING = 0.8


@dataclass(frozen=True)
class SceneFiles:
    """The URDFs of one scene and the scaling they are loaded with."""

    mode: str  # "official" or "builtin"
    root: Path | None
    plane: Path
    table: Path
    robot: Path
    blocks: dict[str, Path]  # colour -> URDF
    scaling: float  # globalScaling for the table and blocks


def find_calvin_root(calvin_root: str | os.PathLike | None) -> Path | None:
    """The official folder from the kwarg or the environment variable (None if neither)."""
    candidate = calvin_root if calvin_root is not None else os.environ.get(ROOT_ENV_VAR)
    if not candidate:
        return None
    root = Path(candidate).expanduser()
    if not (root / "data" / "calvin_table_D").is_dir():
        source = "calvin_root" if calvin_root is not None else f"${ROOT_ENV_VAR}"
        raise FileNotFoundError(
            f"CALVIN: {source}={str(candidate)!r} is not a CALVIN folder: expected "
            f"'data/calvin_table_D/' inside it (a calvin_env checkout or the official assets)"
        )
    return root


def resolve_mode(assets: str, calvin_root: str | os.PathLike | None) -> tuple[str, Path | None]:
    if assets not in ASSET_MODES:
        raise ValueError(f"CALVIN: assets must be one of {ASSET_MODES}, got {assets!r}")
    if assets == "builtin":
        return "builtin", None
    root = find_calvin_root(calvin_root)
    if root is None:
        if assets == "official":
            raise FileNotFoundError(
                "CALVIN: assets='official' needs the official scene files: pass calvin_root= "
                f"(a calvin_env checkout with data/ and conf/) or set ${ROOT_ENV_VAR}"
            )
        return "builtin", None
    return "official", root


def scene_files(layout: SceneLayout, mode: str, root: Path | None) -> SceneFiles:
    if mode == "official":
        assert root is not None
        data = root / "data"
        blocks = {c: data / "blocks" / f"block_{c}_{layout.block_sizes[c]}.urdf" for c in BLOCKS}
        table = data / f"calvin_table_{layout.name}" / "urdf" / f"calvin_table_{layout.name}.urdf"
        files = SceneFiles(
            mode="official",
            root=root,
            plane=data / "plane" / "plane.urdf",
            table=table,
            robot=data / "franka_panda" / "panda_longer_finger.urdf",
            blocks=blocks,
            scaling=OFFICIAL_SCALING,
        )
        missing = [
            p for p in (files.plane, files.table, files.robot, *blocks.values()) if not p.exists()
        ]
        if missing:
            raise FileNotFoundError(f"CALVIN: official asset files missing under {root}: {missing}")
        return files
    write = builtin_assets.write_urdf
    return SceneFiles(
        mode="builtin",
        root=None,
        plane=write("plane", builtin_assets.plane_urdf()),
        table=write(f"table_{layout.name}", builtin_assets.table_urdf(layout)),
        robot=write("panda", builtin_assets.panda_urdf()),
        blocks={
            c: write(f"block_{c}", builtin_assets.block_urdf(c, layout.block_sizes[c]))
            for c in BLOCKS
        },
        scaling=1.0,
    )
